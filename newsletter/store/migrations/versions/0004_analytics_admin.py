"""analytics and the editors' dashboard: tracked links, click and open counts, raw hits,
attributed unsubscribes, admin users and their sessions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('issue_tracking',
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('clicks', sa.Boolean(), nullable=False),
    sa.Column('clicks_in_text', sa.Boolean(), nullable=False),
    sa.Column('opens', sa.Boolean(), nullable=False),
    sa.Column('per_subscriber', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_issue_tracking_issue_id_issues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('issue_id', name=op.f('pk_issue_tracking'))
    )
    op.create_table('issue_links',
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('part', sa.String(length=10), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('label', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_issue_links_issue_id_issues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('issue_id', 'position', name=op.f('pk_issue_links'))
    )
    op.create_table('link_counts',
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('clicks', sa.Integer(), nullable=False),
    sa.Column('automated', sa.Integer(), nullable=False),
    sa.Column('unique_clicks', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_link_counts_issue_id_issues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('issue_id', 'position', name=op.f('pk_link_counts'))
    )
    op.create_table('issue_counts',
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('opens', sa.Integer(), nullable=False),
    sa.Column('opens_automated', sa.Integer(), nullable=False),
    sa.Column('unique_opens', sa.Integer(), nullable=False),
    sa.Column('unique_clickers', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_issue_counts_issue_id_issues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('issue_id', name=op.f('pk_issue_counts'))
    )
    op.create_table('hits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('automated', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_hits_issue_id_issues'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_hits_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hits'))
    )
    op.create_index('ix_hits_at', 'hits', ['at'], unique=False)
    op.create_index('ix_hits_issue_subscriber', 'hits', ['issue_id', 'subscriber_id'], unique=False)
    op.create_table('issue_unsubscribes',
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_uid', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_issue_unsubscribes_issue_id_issues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('issue_id', 'subscriber_uid', name=op.f('pk_issue_unsubscribes'))
    )
    op.create_table('admin_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('lists', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_users')),
    sa.UniqueConstraint('email', name=op.f('uq_admin_users_email'))
    )
    op.create_table('admin_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['admin_users.id'], name=op.f('fk_admin_sessions_user_id_admin_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_admin_sessions'))
    )
    op.create_index('ix_admin_sessions_user', 'admin_sessions', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_admin_sessions_user', table_name='admin_sessions')
    op.drop_table('admin_sessions')
    op.drop_table('admin_users')
    op.drop_table('issue_unsubscribes')
    op.drop_index('ix_hits_issue_subscriber', table_name='hits')
    op.drop_index('ix_hits_at', table_name='hits')
    op.drop_table('hits')
    op.drop_table('issue_counts')
    op.drop_table('link_counts')
    op.drop_table('issue_links')
    op.drop_table('issue_tracking')
