"""Performance: each message's sent and failed copies counted as delivery goes (the messages page and a message's
progress read two numbers instead of counting 100,000 delivery rows); existing messages are counted once here."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('message', 'sent_count', IntegerField(default=0)),
                     migrator.add_column('message', 'failed_count', IntegerField(default=0)))
    db.execute_sql("UPDATE message SET "
                   "sent_count = (SELECT COUNT(*) FROM delivery WHERE delivery.message_id = message.id "
                   "AND delivery.state = 'sent'), "
                   "failed_count = (SELECT COUNT(*) FROM delivery WHERE delivery.message_id = message.id "
                   "AND delivery.state = 'failed')")


def down(migrator, db):
    migrator.migrate(migrator.drop_column('message', 'sent_count'), migrator.drop_column('message', 'failed_count'))
