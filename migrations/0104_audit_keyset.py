"""Performance: the audit journal is read newest first a page at a time, by (at, id): one index for both."""
from peewee import *


def up(migrator, db):
    db.execute_sql('DROP INDEX auditevent_at')
    db.execute_sql('CREATE INDEX auditevent_at_id ON audit_event (at, id)')


def down(migrator, db):
    db.execute_sql('DROP INDEX auditevent_at_id')
    db.execute_sql('CREATE INDEX auditevent_at ON audit_event (at)')
