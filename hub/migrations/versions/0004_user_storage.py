"""A user's own storage server (S3 bucket, WebDAV/Nextcloud), its password sealed.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_storage",
        sa.Column("owner", sa.String(255), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("password", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_storage")
