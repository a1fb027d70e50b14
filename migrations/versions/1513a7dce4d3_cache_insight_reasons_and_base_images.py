"""cache insight: steps' miss reasons, builds' resolved base images and the build compared with

Revision ID: 1513a7dce4d3
Revises: e894aa07fe90
Create Date: 2026-11-30 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '1513a7dce4d3'
down_revision = 'e894aa07fe90'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('base_images', sa.Text(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('compared_with', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_builds_compared_with_builds', 'builds', ['compared_with'], ['id'])

    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('miss_reason', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_column('miss_reason')

    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_constraint('fk_builds_compared_with_builds', type_='foreignkey')
        batch_op.drop_column('compared_with')
        batch_op.drop_column('base_images')
