"""issues: authors and preheader, for the archive's index

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: issues recorded before this have neither, and the archive shows them without
    with op.batch_alter_table('issues') as batch:
        batch.add_column(sa.Column('authors', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('preheader', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('issues') as batch:
        batch.drop_column('preheader')
        batch.drop_column('authors')
