"""Engine: fewer indexes on delivery, the hottest table (every copy inserts a row and changes it twice).

The plain message index is the prefix of (message, state); the member index served only member
deletion, which is rare and may scan.
"""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.drop_index('delivery', 'delivery_message_id'),
                     migrator.drop_index('delivery', 'delivery_member_id'))


def down(migrator, db):
    migrator.migrate(migrator.add_index('delivery', ('message_id',), False),
                     migrator.add_index('delivery', ('member_id',), False))
