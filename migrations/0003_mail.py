"""Mail: stored messages, one delivery row per recipient, bounce scores."""
from peewee import *

def up(migrator, db):
    class MailingList(Model):
        class Meta:
            database = db
            table_name = 'mailing_list'

    class Member(Model):
        class Meta:
            database = db
            table_name = 'member'

    class Bounce(Model):
        email_key = CharField(unique=True, max_length=254)
        score = FloatField(default=0.0)
        bounce_count = IntegerField(default=0)
        last_bounce_at = DateTimeField(null=True)
        disabled_until = DateTimeField(index=True, null=True)
        last_reply = TextField(default='')
        class Meta:
            database = db
            table_name = 'bounce'
    db.create_tables([Bounce])

    class Message(Model):
        mailing_list = ForeignKeyField(MailingList, on_delete='CASCADE')
        message_id = CharField(null=True)
        envelope_sender = CharField(max_length=254, default='')
        author = CharField(max_length=254, default='')
        subject = CharField(default='')
        raw = BlobField()
        size = IntegerField()
        state = CharField(max_length=16, default='received')
        reason = TextField(default='')
        received_at = DateTimeField()
        decided_at = DateTimeField(null=True)
        decided_by = ForeignKeyField(Member, null=True, on_delete='SET NULL')
        recipient_count = IntegerField(default=0)
        finished_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'message'
            indexes = ((('state', 'received_at'), False),)
    db.create_tables([Message])

    class Delivery(Model):
        message = ForeignKeyField(Message, on_delete='CASCADE')
        address = CharField(max_length=254)
        member = ForeignKeyField(Member, null=True, on_delete='SET NULL')
        reason = CharField(default='')
        state = CharField(max_length=16, default='queued')
        attempts = SmallIntegerField(default=0)
        next_attempt_at = DateTimeField()
        claimed_until = DateTimeField(null=True)
        claimed_by = CharField(null=True, max_length=64)
        last_reply = TextField(default='')
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'delivery'
            indexes = ((('state', 'next_attempt_at'), False), (('message', 'state'), False))
    db.create_tables([Delivery])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('delivery'))
    migrator.migrate(migrator.drop_table('message'))
    migrator.migrate(migrator.drop_table('bounce'))
