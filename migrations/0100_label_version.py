"""Performance: a token that changes whenever a role or structure is added, renamed or removed (triggers),
so that every process caches the names of roles and structures and reloads them only after a change."""
from peewee import *

SQLITE_TRIGGERS = (
    ('role_labels_insert', 'AFTER INSERT ON role'),
    ('role_labels_update', 'AFTER UPDATE OF name_fr, name_en ON role'),
    ('role_labels_delete', 'AFTER DELETE ON role'),
    ('structure_labels_insert', 'AFTER INSERT ON structure'),
    ('structure_labels_update', 'AFTER UPDATE OF name ON structure'),
    ('structure_labels_delete', 'AFTER DELETE ON structure'),
)
POSTGRES_TRIGGERS = (
    ('role_labels', 'AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF name_fr, name_en ON role'),
    ('structure_labels', 'AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF name ON structure'),
)


def up(migrator, db):
    class LabelVersion(Model):
        version = BigIntegerField(default=0)
        class Meta:
            database = db
            table_name = 'label_version'
    db.create_tables([LabelVersion])
    db.execute_sql('INSERT INTO label_version (id, version) VALUES (1, 0)')
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(
            'CREATE FUNCTION label_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
            'UPDATE label_version SET version = floor(random() * 9007199254740991)::bigint WHERE id = 1; '
            'RETURN NULL; END $$')
        for name, when in POSTGRES_TRIGGERS:
            db.execute_sql(f'CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION label_version_bump()')
    else:
        for name, when in SQLITE_TRIGGERS:
            db.execute_sql(f'CREATE TRIGGER {name} {when} BEGIN '
                           'UPDATE label_version SET version = random() WHERE id = 1; END')


def down(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        for name, when in POSTGRES_TRIGGERS:
            db.execute_sql(f'DROP TRIGGER IF EXISTS {name} ON {when.split(" ON ")[1]}')
        db.execute_sql('DROP FUNCTION IF EXISTS label_version_bump()')
    else:
        for name, _when in SQLITE_TRIGGERS:
            db.execute_sql(f'DROP TRIGGER IF EXISTS {name}')
    migrator.migrate(migrator.drop_table('label_version'))
