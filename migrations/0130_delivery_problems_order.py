"""Performance: a message's page lists its failed and deferred copies by state then address, a page at a time.

The (message, state) index gave the rows but not their order: every view sorted the 4,000 problem copies of a
100,000-copy message. (message, state, address) gives them in order and still serves every use of its prefix
(the engine's counts by state); the criteria preview's exact count reads a message's addresses from it alone.
It replaces the old index rather than adding one: delivery is the hottest table.
"""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.drop_index('delivery', 'delivery_message_id_state'),
                     migrator.add_index('delivery', ('message_id', 'state', 'address'), False))


def down(migrator, db):
    migrator.migrate(migrator.drop_index('delivery', 'delivery_message_id_state_address'),
                     migrator.add_index('delivery', ('message_id', 'state'), False))
