"""Security review (issue 11): who made an address change: the member (Mon espace), staff or the import."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('email_change', 'source', CharField(max_length=16, default='member')))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('email_change', 'source'))
