"""Security review (issue 11, finding 8): login sessions kept server-side, so that logging out ends them."""
from peewee import *


def up(migrator, db):
    class Member(Model):
        class Meta:
            database = db
            table_name = 'member'

    class AuthSession(Model):
        key_hash = CharField(max_length=64, unique=True)
        member = ForeignKeyField(Member, on_delete='CASCADE')
        auth_version = IntegerField()
        remember = BooleanField(default=False)
        created_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        ended_at = DateTimeField(null=True)
        ip = CharField(max_length=64, null=True)

        class Meta:
            database = db
            table_name = 'auth_session'
    db.create_tables([AuthSession])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('auth_session'))
