"""Engine: the members who share one delivered copy (a family address), for the footer and its unsubscribe link."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('delivery', 'member_ids', CharField(max_length=255, default='')))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('delivery', 'member_ids'))
