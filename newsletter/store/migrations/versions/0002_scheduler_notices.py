"""scheduler notices: one editor email per skipped issue and reason

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:40:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scheduler_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_slug', sa.String(length=100), nullable=False),
    sa.Column('issue_slug', sa.String(length=200), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduler_notices')),
    sa.UniqueConstraint('list_slug', 'issue_slug', 'due_at', 'reason', name='uq_scheduler_notices_issue')
    )


def downgrade() -> None:
    op.drop_table('scheduler_notices')
