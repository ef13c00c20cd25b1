"""The migrations build exactly the models' schema, and upgrading an old database keeps its data."""

from __future__ import annotations

import peewee
import pytest

from engine import db as engine_db
from engine.models import ALL_MODELS


def schema_of(database: peewee.Database) -> dict[str, dict[str, object]]:
    """Tables with their columns (type, null, pk), indexes (columns, unique) and foreign keys."""
    schema: dict[str, dict[str, object]] = {}
    for table in sorted(t for t in database.get_tables() if t != "schema_migration"):
        columns = {(c.name, c.data_type.lower(), c.null, c.primary_key) for c in database.get_columns(table)}
        indexes = {(tuple(i.columns), i.unique) for i in database.get_indexes(table)}
        fks = {(fk.column, fk.dest_table, fk.dest_column) for fk in database.get_foreign_keys(table)}
        schema[table] = {"columns": columns, "indexes": indexes, "foreign_keys": fks}
    return schema


def test_migrated_schema_equals_the_models(db_url, empty_db_url):
    migrated = engine_db.make_database(db_url)  # built by running every migration
    from_models = engine_db.make_database(empty_db_url)
    with from_models.bind_ctx(ALL_MODELS):
        from_models.create_tables(ALL_MODELS)
    try:
        assert schema_of(migrated) == schema_of(from_models)
        assert engine_db.pending_migrations(migrated) == []
    finally:
        migrated.close()
        from_models.close()


def test_schema_diff_finds_nothing_to_do_after_migrations(db_url):
    from playhouse.schema_diff import diff_models

    migrated = engine_db.make_database(db_url)
    with migrated.bind_ctx(ALL_MODELS):
        diff = diff_models(migrated, ALL_MODELS)
    migrated.close()
    assert not diff, str(diff)


def test_upgrade_from_the_first_migration_keeps_the_data(empty_db_url):
    database = engine_db.make_database(empty_db_url)
    database.connect()
    first = engine_db.runner(database).migrations()[0].name
    assert engine_db.upgrade(database, target=first) == [first]
    database.execute_sql(
        "INSERT INTO structure (code, name, kind, parent_id, path, depth) "
        "VALUES ('FFESSM', 'Fédération', 'federation', NULL, '00000001', 0)")
    database.execute_sql(
        "INSERT INTO member (licence_number, first_name, last_name, email, email_key, club_id, "
        "auth_version, created_at) VALUES ('A-12-345678', 'Élodie', 'Dupré', 'Elodie@Example.org', "
        "'elodie@example.org', 1, 0, '2026-01-01 10:00:00')")
    with pytest.raises(engine_db.SchemaBehindError, match="palanquee db upgrade"):
        engine_db.check_schema(database)

    applied = engine_db.upgrade(database)
    assert applied and first not in applied
    engine_db.check_schema(database)
    row = database.execute_sql(
        "SELECT m.first_name, m.email, s.code FROM member m JOIN structure s ON s.id = m.club_id").fetchone()
    assert tuple(row) == ("Élodie", "Elodie@Example.org", "FFESSM")
    # the later migrations' tables exist and can reference the old rows
    database.execute_sql("INSERT INTO domain (name, structure_id, lists_enabled, created_at) "
                         "VALUES ('listes.example.fr', 1, true, '2026-01-01 10:00:00')")
    assert engine_db.upgrade(database) == []  # idempotent
    database.close()


def test_every_migration_can_be_reverted(empty_db_url):
    database = engine_db.make_database(empty_db_url)
    database.connect()
    runner = engine_db.runner(database)
    runner.up()
    while runner.down():
        pass
    assert set(database.get_tables()) <= {"schema_migration"}
    database.close()
