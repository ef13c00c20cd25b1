"""Performance: Mes listes finds a member's static subscriptions and opt-outs by address across all lists."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_index('subscription', ('email_key',), False),
                     migrator.add_index('opt_out', ('email_key',), False))


def down(migrator, db):
    migrator.migrate(migrator.drop_index('subscription', 'subscription_email_key'),
                     migrator.drop_index('opt_out', 'opt_out_email_key'))
