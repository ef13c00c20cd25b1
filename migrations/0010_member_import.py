"""Member import: when an import last wrote or confirmed a member's address (protects addresses members set)."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('member', 'email_imported_at', DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('member', 'email_imported_at'))
