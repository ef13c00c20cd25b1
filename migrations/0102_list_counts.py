"""Performance: each list's recipient count, kept with when it was taken, for the staff's lists page."""
from peewee import *


def up(migrator, db):
    class MailingList(Model):
        class Meta:
            database = db
            table_name = 'mailing_list'

    class ListCount(Model):
        mailing_list = ForeignKeyField(MailingList, primary_key=True, backref='count', on_delete='CASCADE')
        recipients = IntegerField(null=True)
        counted_at = DateTimeField(null=True)
        changed_at = DateTimeField(null=True)
        claimed_until = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'list_count'
    db.create_tables([ListCount])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('list_count'))
