"""Engine: ``delivery.member_ids`` as text. The ids of every member sharing a copy's address ("12 57 …") outgrow
255 characters past about forty members on one address; PostgreSQL refused such a post's expansion."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.alter_column_type('delivery', 'member_ids', TextField(default='')))


def down(migrator, db):
    migrator.migrate(migrator.alter_column_type('delivery', 'member_ids', CharField(max_length=255, default='')))
