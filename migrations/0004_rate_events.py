"""Member space: rate-limiting events (failed logins, reset mails) shared by every portal process."""
from peewee import *


def up(migrator, db):
    class RateEvent(Model):
        key = CharField(max_length=300)
        at = DateTimeField(index=True)
        class Meta:
            database = db
            table_name = 'rate_event'
            indexes = ((('key', 'at'), False),)
    db.create_tables([RateEvent])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('rate_event'))
