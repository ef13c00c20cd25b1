"""Directory: structures, roles, members, mandates, address changes, staff scopes, audit."""
from peewee import *

def up(migrator, db):
    class Structure(Model):
        code = CharField(unique=True, max_length=32)
        name = CharField(max_length=200)
        kind = CharField(index=True, max_length=16)
        parent = ForeignKeyField('self', null=True, on_delete='RESTRICT')
        path = CharField(index=True, default='')
        depth = SmallIntegerField(default=0)
        department = CharField(null=True, max_length=3)
        class Meta:
            database = db
            table_name = 'structure'
    db.create_tables([Structure])

    class Member(Model):
        licence_number = CharField(unique=True, max_length=32)
        first_name = CharField(max_length=100)
        last_name = CharField(max_length=100)
        email = CharField(null=True, max_length=254)
        email_key = CharField(index=True, null=True, max_length=254)
        email_set_by_member_at = DateTimeField(null=True)
        club = ForeignKeyField(Structure, null=True, on_delete='SET NULL')
        licence_season = IntegerField(null=True)
        licence_valid_until = DateField(index=True, null=True)
        password_hash = CharField(null=True)
        auth_version = IntegerField(default=0)
        language = CharField(null=True, max_length=5)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'member'
    db.create_tables([Member])

    class AuditEvent(Model):
        at = DateTimeField(index=True)
        actor = ForeignKeyField(Member, null=True, on_delete='SET NULL')
        actor_label = CharField(max_length=64, default='')
        action = CharField(index=True, max_length=64)
        object_type = CharField(max_length=32)
        object_id = IntegerField(null=True)
        structure_id = IntegerField(index=True, null=True)
        detail = TextField(default='{}')
        ip = CharField(null=True, max_length=64)
        class Meta:
            database = db
            table_name = 'audit_event'
            indexes = ((('object_type', 'object_id'), False),)
    db.create_tables([AuditEvent])

    class EmailChange(Model):
        member = ForeignKeyField(Member, on_delete='CASCADE')
        old_email = CharField(null=True, max_length=254)
        new_email = CharField(max_length=254)
        requested_at = DateTimeField()
        verified_at = DateTimeField(null=True)
        effective_at = DateTimeField(index=True, null=True)
        cancelled_at = DateTimeField(null=True)
        applied_at = DateTimeField(null=True)
        requested_ip = CharField(null=True, max_length=64)
        class Meta:
            database = db
            table_name = 'email_change'
    db.create_tables([EmailChange])

    class Role(Model):
        code = CharField(unique=True, max_length=48)
        name_fr = CharField(max_length=120)
        name_en = CharField(max_length=120)
        category = CharField(max_length=16, default='board')
        rank = SmallIntegerField(default=100)
        class Meta:
            database = db
            table_name = 'role'
    db.create_tables([Role])

    class Mandate(Model):
        member = ForeignKeyField(Member, on_delete='CASCADE')
        role = ForeignKeyField(Role, on_delete='RESTRICT')
        structure = ForeignKeyField(Structure, on_delete='CASCADE')
        starts_on = DateField()
        ends_on = DateField(null=True)
        source = CharField(max_length=16, default='import')
        class Meta:
            database = db
            table_name = 'mandate'
            indexes = ((('role', 'structure'), False), (('member', 'role', 'structure', 'starts_on'), True))
    db.create_tables([Mandate])

    class StaffScope(Model):
        member = ForeignKeyField(Member, on_delete='CASCADE')
        structure = ForeignKeyField(Structure, on_delete='CASCADE')
        granted_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'staff_scope'
            indexes = ((('member', 'structure'), True),)
    db.create_tables([StaffScope])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('staff_scope'))
    migrator.migrate(migrator.drop_table('mandate'))
    migrator.migrate(migrator.drop_table('role'))
    migrator.migrate(migrator.drop_table('email_change'))
    migrator.migrate(migrator.drop_table('audit_event'))
    migrator.migrate(migrator.drop_table('member'))
    migrator.migrate(migrator.drop_table('structure'))
