"""Statements of fixed shape compiled to SQL text once, then run with new parameters.

Peewee builds each query's SQL in Python, and for the intake's small indexed queries that costs more than the
database takes to run them (``bench.intake``'s profile: the route, the post's list and the post's INSERT were
most of the intake's database time, nearly all of it peewee building SQL). A ``Select`` builds its query once
per kind of database with probe values, remembers where the probes sit among the parameters, and then only
puts the values (converted by their fields, as peewee would) in their places; rows come back built by peewee
(models, with joined models attached), so callers see no difference. ``insert`` does the same for an INSERT of
one row, its defaults filled in as ``Model.create`` fills them. ``engine/lists/compiled.py`` does it for
``resolve``'s larger statement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import peewee as pw

from engine.db import database

Converter = pw.Field | None  # converts a value as this field stores it (None: passed as it is)
_NUMERIC = (pw.IntegerField, pw.AutoField, pw.ForeignKeyField)
M = TypeVar("M", bound=pw.Model)


def _kind() -> str:
    return type(database.obj).__name__


def _probe(field: Converter, n: int) -> Any:
    """A value no real parameter takes, of the field's type."""
    return -(10**12) - n if isinstance(field, _NUMERIC) else f"\x00probe{n}\x00"


def _convert(field: Converter, value: Any) -> Any:
    return value if field is None else field.db_value(value)


class Select(Generic[M]):
    """``build(*values)`` is a peewee SELECT whose shape does not depend on the values; ``fields`` convert each
    value (``Domain.name``, ``MailingList.id``; None for a value compared to a function's result)."""

    def __init__(self, build: Callable[..., pw.ModelSelect[M]], *fields: Converter) -> None:
        self.build, self.fields = build, fields
        self._compiled: dict[str, tuple[str, list[Any], list[list[int]], Callable[[Any], list[M]]] | None] = {}

    def __call__(self, *values: Any) -> list[M]:
        kind = _kind()
        if kind not in self._compiled:
            self._compiled[kind] = self._compile()
        compiled = self._compiled[kind]
        if compiled is None:  # a shape the probes could not find their places in: built each time
            return list(self.build(*values))
        sql, template, slots, rows = compiled
        params = list(template)
        for field, value, places in zip(self.fields, values, slots, strict=True):
            converted = _convert(field, value)
            for place in places:
                params[place] = converted
        return rows(database.execute_sql(sql, params))

    def _compile(self) -> tuple[str, list[Any], list[list[int]], Callable[[Any], list[M]]] | None:
        probes = [_probe(field, n) for n, field in enumerate(self.fields)]
        query = self.build(*probes)
        sql, params = query.sql()
        slots = [[i for i, param in enumerate(params) if param == _convert(field, probe)]
                 for field, probe in zip(self.fields, probes, strict=True)]
        if not all(slots) or any(str(probe) in sql for probe in probes):
            return None
        return sql, list(params), slots, _rows(query)


_inserts: dict[tuple[str, type[pw.Model]], tuple[str, list[pw.Field]]] = {}


def insert(model: type[pw.Model], **values: Any) -> int:
    """INSERT one row of ``model`` (fields not given take their defaults, as ``Model.create``); its id."""
    key = (_kind(), model)
    found = _inserts.get(key)
    if found is None:
        key_field = model._meta.primary_key
        assert isinstance(key_field, pw.Field)
        fields = [field for field in model._meta.sorted_fields if field is not key_field]
        columns = ", ".join(f'"{field.column_name}"' for field in fields)
        marks = ", ".join([database.obj.param] * len(fields))
        returning = f' RETURNING "{key_field.column_name}"' if database.obj.returning_clause else ""
        found = _inserts[key] = (f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ({marks}){returning}',
                                 fields)
    sql, fields = found
    unknown = set(values) - {field.name for field in fields}
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    params = []
    for field in fields:
        if field.name in values:
            value = values[field.name]
        else:
            value = field.default() if callable(field.default) else field.default
        params.append(field.db_value(value))
    cursor = database.execute_sql(sql, params)
    return int(cursor.fetchone()[0] if database.obj.returning_clause else cursor.lastrowid)


def _rows(query: pw.ModelSelect[M]) -> Callable[[Any], list[M]]:
    """How to build the query's models from a cursor: its own model and those joined through foreign keys (each to
    one model before it), each field read as peewee reads it (``python_value``); peewee's cursor wrapper for
    anything else (it resolves the columns again at each execution, which costs more than the query here)."""
    columns: list[Any] = list(query._returning)  # type: ignore[attr-defined]
    models: list[Any] = list(dict.fromkeys(getattr(column, "model", None) for column in columns))
    joins: list[tuple[Any, str, Any]] = []  # (model holding the foreign key, its name, the model it points to)
    for n, model in enumerate(models[1:], start=1):
        found = [(source, fk.name, model) for source in models[:n] for fk in source._meta.refs if fk.rel_model is model]
        if len(found) != 1:
            joins = []
            break
        joins.extend(found)
    if not all(isinstance(column, pw.Field) for column in columns) or models[0] is not query.model or (
            len(joins) != len(models) - 1):
        return lambda cursor: list(query._get_cursor_wrapper(cursor))  # type: ignore[attr-defined]
    groups: list[tuple[Any, list[tuple[int, str, Callable[[Any], Any]]]]] = [(model, [
        (n, column.name, column.python_value) for n, column in enumerate(columns) if column.model is model])
        for model in models]

    def build(cursor: Any) -> list[M]:
        found: list[M] = []
        for row in cursor.fetchall():
            made = {model: model(__no_default__=1, **{name: read(row[n]) for n, name, read in fields})
                    for model, fields in groups}
            for source, name, target in joins:
                setattr(made[source], name, made[target])
            for instance in made.values():  # read, not changed (as peewee leaves rows it builds)
                instance._dirty.clear()
            found.append(made[query.model])
        return found
    return build
