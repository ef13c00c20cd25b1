"""Lists: domains, mailing lists, criteria, subscriptions, opt-outs, moderators, posting rights."""
from peewee import *

def up(migrator, db):
    class Member(Model):
        class Meta:
            database = db
            table_name = 'member'

    class Role(Model):
        class Meta:
            database = db
            table_name = 'role'

    class Structure(Model):
        class Meta:
            database = db
            table_name = 'structure'

    class Domain(Model):
        name = CharField(unique=True, max_length=253)
        structure = ForeignKeyField(Structure, on_delete='RESTRICT')
        lists_enabled = BooleanField(default=True)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'domain'
    db.create_tables([Domain])

    class MailingList(Model):
        domain = ForeignKeyField(Domain, on_delete='RESTRICT')
        local_part = CharField(max_length=64)
        name = CharField(max_length=200)
        description = TextField(default='')
        kind = CharField(max_length=16, default='role')
        structure = ForeignKeyField(Structure, on_delete='RESTRICT')
        owner = ForeignKeyField(Member, null=True, on_delete='SET NULL')
        post_policy = CharField(max_length=16, default='members')
        hold_unauthorised = BooleanField(default=True)
        subject_prefix = CharField(max_length=64, default='')
        reply_to = CharField(max_length=16, default='author')
        created_at = DateTimeField()
        deleted_at = DateTimeField(null=True)
        last_posted_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'mailing_list'
            indexes = ((('domain', 'local_part'), True),)
    db.create_tables([MailingList])

    class ListCriterion(Model):
        mailing_list = ForeignKeyField(MailingList, on_delete='CASCADE')
        structure = ForeignKeyField(Structure, on_delete='CASCADE')
        include_subtree = BooleanField(default=False)
        structure_kind = CharField(null=True, max_length=16)
        require_valid_licence = BooleanField(default=True)
        class Meta:
            database = db
            table_name = 'list_criterion'
    db.create_tables([ListCriterion])

    class CriterionRole(Model):
        criterion = ForeignKeyField(ListCriterion, on_delete='CASCADE')
        role = ForeignKeyField(Role, on_delete='CASCADE')
        class Meta:
            database = db
            table_name = 'criterion_role'
            indexes = ((('criterion', 'role'), True),)
    db.create_tables([CriterionRole])

    class ListModerator(Model):
        mailing_list = ForeignKeyField(MailingList, on_delete='CASCADE')
        member = ForeignKeyField(Member, null=True, on_delete='CASCADE')
        email = CharField(null=True, max_length=254)
        class Meta:
            database = db
            table_name = 'list_moderator'
    db.create_tables([ListModerator])

    class OptOut(Model):
        mailing_list = ForeignKeyField(MailingList, on_delete='CASCADE')
        member = ForeignKeyField(Member, null=True, on_delete='CASCADE')
        email_key = CharField(null=True, max_length=254)
        created_at = DateTimeField()
        source = CharField(max_length=16)
        class Meta:
            database = db
            table_name = 'opt_out'
            indexes = ((('mailing_list', 'member'), False), (('mailing_list', 'email_key'), False))
    db.create_tables([OptOut])

    class PostingPermission(Model):
        mailing_list = ForeignKeyField(MailingList, on_delete='CASCADE')
        role = ForeignKeyField(Role, null=True, on_delete='CASCADE')
        structure = ForeignKeyField(Structure, null=True, on_delete='CASCADE')
        email_key = CharField(null=True, max_length=254)
        class Meta:
            database = db
            table_name = 'posting_permission'
    db.create_tables([PostingPermission])

    class Subscription(Model):
        mailing_list = ForeignKeyField(MailingList, on_delete='CASCADE')
        email = CharField(max_length=254)
        email_key = CharField(max_length=254)
        member = ForeignKeyField(Member, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        source = CharField(max_length=16, default='staff')
        class Meta:
            database = db
            table_name = 'subscription'
            indexes = ((('mailing_list', 'email_key'), True),)
    db.create_tables([Subscription])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('subscription'))
    migrator.migrate(migrator.drop_table('posting_permission'))
    migrator.migrate(migrator.drop_table('opt_out'))
    migrator.migrate(migrator.drop_table('list_moderator'))
    migrator.migrate(migrator.drop_table('criterion_role'))
    migrator.migrate(migrator.drop_table('list_criterion'))
    migrator.migrate(migrator.drop_table('mailing_list'))
    migrator.migrate(migrator.drop_table('domain'))
