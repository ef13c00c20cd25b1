"""Queries built once and run many times, for the pages every member opens.

Peewee spends more time turning a query into SQL than SQLite spends running it (a member's row by primary
key: about 0.3 ms of Python against 20 µs in SQLite; PERFORMANCE.md). A ``Prepared`` query is written with
peewee as usual, with ``slot("name")`` wherever a value changes from call to call; its SQL is compiled once
per database dialect, and each call only fills in the values and reads the rows through peewee's own row
conversion (models, joined models, dates from SQLite's text), exactly as the query would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import peewee as pw

from engine.db import database

Row = TypeVar("Row")


class _Slot:
    __slots__ = ("name", "field")

    def __init__(self, name: str, field: pw.Field | None) -> None:
        self.name = name
        self.field = field


def slot(name: str, field: pw.Field | None = None) -> pw.Value:
    """A value given at each call, by name; ``field`` converts it as that column's values are (dates, booleans)."""
    return pw.Value(_Slot(name, field), converter=False)


class Prepared(Generic[Row]):
    """A SELECT compiled to SQL on first use (per dialect), then run with new values: ``query.all(id=3)``."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build  # returns a peewee SELECT (model, joined models, tuples…)
        self._compiled: dict[type, tuple[Any, str, list[Any]]] = {}
        self._readers: dict[type, dict[str, Any]] = {}  # per dialect: how peewee reads the rows, worked out once

    def _compile(self, db: pw.Database) -> tuple[Any, str, list[Any]]:
        found = self._compiled.get(type(db))
        if found is None:
            query = self._build()
            sql, params = query.sql()
            found = self._compiled[type(db)] = (query, sql, params)
        return found

    def _run(self, values: dict[str, Any]) -> tuple[Any, Any]:
        db = database.obj
        query, sql, params = self._compile(db)
        return query, db.execute_sql(sql, [_fill(param, values) for param in params])

    def execute(self, **values: Any) -> Iterator[Row]:
        query, cursor = self._run(values)
        wrapper = query._get_cursor_wrapper(cursor)  # peewee's own row conversion
        self._ready(wrapper)
        rows: Iterator[Row] = iter(wrapper)
        return rows

    def _ready(self, wrapper: Any) -> None:
        """Peewee's cursor wrapper works out, for each statement run, which column goes to which field and
        converter (``initialize``: about as long as SQLite takes to find a member by key). The statement is the
        same each time, so is the answer: worked out once per dialect, then given to each new wrapper."""
        kind = type(database.obj)
        reader = self._readers.get(kind)
        if reader is None:
            if wrapper.cursor.description is None:
                return  # nothing to read from (not a SELECT): peewee's own way
            wrapper.initialize()
            reader = {k: v for k, v in vars(wrapper).items() if k not in _PER_CURSOR}
            self._readers[kind] = reader
        else:
            vars(wrapper).update(reader)
        wrapper.initialized = True

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """The driver's rows as they come (no conversion: SQLite gives dates as ISO text)."""
        return list(self._run(values)[1].fetchall())

    def all(self, **values: Any) -> list[Row]:
        return list(self.execute(**values))

    def first(self, **values: Any) -> Row | None:
        return next(self.execute(**values), None)


# What a peewee cursor wrapper holds of its own cursor (the rest is derived from the statement and its models).
_PER_CURSOR = frozenset({"cursor", "count", "index", "initialized", "populated", "row_cache"})


def _fill(param: Any, values: dict[str, Any]) -> Any:
    if not isinstance(param, _Slot):
        return param
    value = values[param.name]
    return param.field.db_value(value) if param.field is not None else value


class PreparedIn:
    """A SELECT with ``IN`` lists of values (a page's ids), compiled once per length of each list:
    ``PreparedIn(lambda ids: Model.select().where(Model.id.in_(ids)))`` then ``.rows([3, 5, 8])``."""

    def __init__(self, build: Callable[..., Any], kept: int = 100) -> None:
        self._build = build  # called with one list of slots per IN list
        self._kept = kept  # lengths up to this are kept (a page's)
        self._by_length: dict[tuple[int, ...], Prepared[Any]] = {}

    def _prepared(self, lists: tuple[list[Any], ...]) -> tuple[Prepared[Any], dict[str, Any]]:
        lengths = tuple(len(values) for values in lists)
        found = self._by_length.get(lengths)
        if found is None:
            names = [[f"in{n}_{i}" for i in range(length)] for n, length in enumerate(lengths)]
            found = Prepared(lambda: self._build(*[[slot(name) for name in group] for group in names]))
            if max(lengths, default=0) <= self._kept:
                self._by_length[lengths] = found
        values = {f"in{n}_{i}": value for n, group in enumerate(lists) for i, value in enumerate(group)}
        return found, values

    def rows(self, *lists: list[Any]) -> list[tuple[Any, ...]]:
        """The driver's rows (no conversion), the IN lists given in the order ``build`` takes them."""
        prepared, values = self._prepared(lists)
        return prepared.rows(**values)

    def all(self, *lists: list[Any]) -> list[Any]:
        prepared, values = self._prepared(lists)
        return prepared.all(**values)
