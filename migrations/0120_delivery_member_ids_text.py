"""Engine: ``delivery.member_ids`` as text. An address shared by more than about 30 members (a club's
secretariat, a family) made a list of ids longer than 255 characters: PostgreSQL refused the expansion's
INSERT (value too long), retried forever; SQLite never enforced the length."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.alter_column_type('delivery', 'member_ids', TextField(default='')))


def down(migrator, db):
    migrator.migrate(migrator.alter_column_type('delivery', 'member_ids', CharField(max_length=255, default='')))
