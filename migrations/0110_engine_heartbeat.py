"""Operations: one heartbeat row per running engine process, read by the portal's /healthz and the metrics."""
from peewee import *


def up(migrator, db):
    class EngineHeartbeat(Model):
        name = CharField(max_length=100, unique=True)
        role = CharField(max_length=16)
        started_at = DateTimeField()
        seen_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = 'engine_heartbeat'

    db.create_tables([EngineHeartbeat])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('engine_heartbeat'))
