"""bounces: inbound reports and delivery events

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:52:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbound_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('detector', sa.String(length=30), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=300), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.Column('raw_size', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_reports')),
    sa.UniqueConstraint('digest', name=op.f('uq_inbound_reports_digest'))
    )
    with op.batch_alter_table('inbound_reports', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_reports_outcome_received', ['outcome', 'received_at'], unique=False)

    op.create_table('delivery_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('report_id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=True),
    sa.Column('issue_id', sa.Integer(), nullable=True),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('list_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=True),
    sa.Column('diagnostic', sa.Text(), nullable=True),
    sa.Column('reporter', sa.String(length=200), nullable=True),
    sa.Column('feedback_type', sa.String(length=20), nullable=True),
    sa.Column('counted', sa.Boolean(), nullable=False),
    sa.Column('effect', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_delivery_events_issue_id_issues'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], name=op.f('fk_delivery_events_list_id_lists'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['report_id'], ['inbound_reports.id'], name=op.f('fk_delivery_events_report_id_inbound_reports'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_delivery_events_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_events'))
    )
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_events_issue_kind', ['issue_id', 'kind'], unique=False)
        batch_op.create_index('ix_delivery_events_occurred', ['occurred_at'], unique=False)
        batch_op.create_index('ix_delivery_events_subscriber', ['subscriber_id', 'occurred_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_events_subscriber')
        batch_op.drop_index('ix_delivery_events_occurred')
        batch_op.drop_index('ix_delivery_events_issue_kind')

    op.drop_table('delivery_events')
    with op.batch_alter_table('inbound_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_reports_outcome_received')

    op.drop_table('inbound_reports')
