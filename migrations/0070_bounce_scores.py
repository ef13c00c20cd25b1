"""Bounces: the once-a-day score of an address, when it was disabled, every returned message kept, the
delivery counts of finished messages, and a per-list threshold."""
from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('bounce', 'disabled_at', DateTimeField(null=True)),
        migrator.add_column('bounce', 'counted_on', DateField(null=True)),
        migrator.add_column('bounce', 'counted_weight', FloatField(default=0.0)),
        migrator.add_column('bounce', 'last_kind', CharField(max_length=16, default='')),
        migrator.add_column('bounce', 'last_status', CharField(max_length=16, default='')),
        migrator.add_column('bounce', 'probe_sent_at', DateTimeField(null=True)),
        migrator.add_column('mailing_list', 'bounce_threshold', FloatField(null=True)),
    )

    class MailingList(Model):
        class Meta:
            database = db
            table_name = 'mailing_list'

    class Message(Model):
        class Meta:
            database = db
            table_name = 'message'

    class BounceEvent(Model):
        at = DateTimeField()
        email_key = CharField(max_length=254)
        mailing_list = ForeignKeyField(MailingList, null=True, on_delete='CASCADE', index=False)
        message = ForeignKeyField(Message, null=True, on_delete='CASCADE', index=False)
        delivery_id = IntegerField(null=True)
        source = CharField(max_length=8)
        kind = CharField(max_length=16)
        status = CharField(max_length=16, default='')
        final = BooleanField(default=True)
        weight = FloatField(default=0.0)
        recipients = CharField(max_length=1000, default='')
        diagnostic = TextField(default='')
        content = BlobField(null=True)
        forwarded = BooleanField(default=False)

        class Meta:
            database = db
            table_name = 'bounce_event'
            indexes = ((('message', 'kind'), False), (('mailing_list', 'at'), False), (('email_key', 'at'), False))

    class MessageStats(Model):
        message = ForeignKeyField(Message, primary_key=True, on_delete='CASCADE')
        sent = IntegerField(default=0)
        failed = IntegerField(default=0)
        settled_at = DateTimeField()

        class Meta:
            database = db
            table_name = 'message_stats'

    db.create_tables([BounceEvent, MessageStats])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('message_stats'))
    migrator.migrate(migrator.drop_table('bounce_event'))
    migrator.migrate(
        migrator.drop_column('mailing_list', 'bounce_threshold'),
        migrator.drop_column('bounce', 'probe_sent_at'),
        migrator.drop_column('bounce', 'last_status'),
        migrator.drop_column('bounce', 'last_kind'),
        migrator.drop_column('bounce', 'counted_weight'),
        migrator.drop_column('bounce', 'counted_on'),
        migrator.drop_column('bounce', 'disabled_at'),
    )
