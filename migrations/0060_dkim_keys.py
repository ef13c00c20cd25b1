"""Deliverability: DKIM keys of the list domains (stored in the database, shared by every engine)."""
from peewee import *


def up(migrator, db):
    class DkimKey(Model):
        domain = CharField(max_length=253)
        selector = CharField(max_length=63)
        algorithm = CharField(max_length=16, default='rsa-sha256')
        private_key = TextField()
        active = BooleanField(default=True)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'dkim_key'
            indexes = ((('domain', 'selector'), True),)
    db.create_tables([DkimKey])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('dkim_key'))
