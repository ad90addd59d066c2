"""confirmations: numbered confirmation requests (what a link confirms) and the daily cap

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02 02:00:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('confirmations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('mailbox_hash', sa.String(length=64), nullable=False),
    sa.Column('mailed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_confirmations_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_confirmations')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.create_index('ix_confirmations_created', ['created_at'], unique=False)
        batch_op.create_index('ix_confirmations_mailbox', ['mailbox_hash', 'created_at'], unique=False)

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_in', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('requested_in')

    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_confirmations_mailbox')
        batch_op.drop_index('ix_confirmations_created')

    op.drop_table('confirmations')
