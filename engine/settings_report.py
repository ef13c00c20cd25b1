"""What ``palanquee config`` prints: every setting in force in the notation of the README and the TOML
file (``127.0.0.1:5000``, ``off``, ``3d``), where it comes from, and which are missing or wrong.

It works before the first start: nothing here needs a secret key, a database or an instance folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.config import PREFIX, SPEC_BY_NAME, SPECS, Settings, _raw_values, _read_toml, load_settings

DERIVED = {
    "database_url": "default: in the instance folder",
    "base_url": "default: from PALANQUEE_WEB_LISTEN",
}


@dataclass(frozen=True)
class Row:
    variable: str
    value: str
    note: str = ""
    problem: bool = False  # missing or invalid


def format_duration(value: timedelta) -> str:
    """The largest whole unit: ``0``, ``90s``, ``15m``, ``72h`` reads back as ``3d``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds else "0"


def format_value(name: str, value: Any) -> str:
    """A parsed value written as the README and the TOML file write it."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, ZoneInfo):
        return value.key
    if isinstance(value, tuple) and name == "season_start":
        return f"{value[0]:02d}-{value[1]:02d}"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):  # host:port
        host, port = value
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(value, tuple):  # a list setting, written as the variable takes it
        return ", ".join(str(item) for item in value) if value else "(empty)"
    return str(value) if value != "" else "(empty)"


def _sources(environ: Mapping[str, str]) -> dict[str, str]:
    in_file = set(_read_toml(environ[PREFIX + "CONFIG"])) if environ.get(PREFIX + "CONFIG") else set()
    return {spec.name: "environment" if spec.variable in environ else
            f"{PREFIX}CONFIG file" if spec.name in in_file else "" for spec in SPECS}


def _secret_row(raw: Any, instance: str, source: str) -> Row:
    """Never the key itself: set (and where), too short, or missing."""
    variable = PREFIX + "SECRET_KEY"
    if raw and len(str(raw)) < 16:
        return Row(variable, "INVALID", "expected at least 16 characters", problem=True)
    if raw:
        return Row(variable, "(set)", source)
    key_file = Path(instance).resolve() / "secret_key"
    if key_file.exists():
        return Row(variable, "(set)", f"kept in {key_file}")
    return Row(variable, "MISSING", "required by every command but `palanquee demo`, which generates one "
               "in the instance folder", problem=True)


def report(environ: Mapping[str, str] | None = None) -> list[Row]:
    """One row per setting, in the order of the README's table."""
    environ = os.environ if environ is None else environ
    sources = _sources(environ)
    raw = _raw_values(environ, {})
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in SPECS:
        if raw[spec.name] is not None and spec.name != "secret_key":
            try:
                parsed[spec.name] = spec.parse(raw[spec.name])
            except ValueError as exc:
                errors[spec.name] = f"expected {exc}, got {raw[spec.name]!r}"
    # The others as they would be, each wrong value replaced by its default (one wrong value hides nothing).
    fallback = {name: SPEC_BY_NAME[name].default for name in errors} | {"secret_key": ""}
    settings = load_settings(environ, overrides=fallback, require_secret=False)
    rows = []
    for spec in SPECS:
        if spec.name in errors:
            rows.append(Row(spec.variable, "INVALID", errors[spec.name], problem=True))
        elif spec.name == "secret_key":
            rows.append(_secret_row(raw["secret_key"], parsed.get("instance", "./instance"), sources[spec.name]))
        else:
            rows.append(_row(spec.name, spec.variable, settings, raw[spec.name], sources[spec.name]))
    return rows


def _shown(name: str, raw: Any, value: Any) -> str:
    """The text as typed when it means exactly the value in force (``72h`` stays ``72h``), else the value
    written in the same notation (an absolute instance folder, a derived URL)."""
    spec = SPEC_BY_NAME[name]
    if isinstance(raw, str) and raw.strip():
        try:
            if spec.parse(raw) == value:
                return raw.strip()
        except ValueError:
            pass
    return format_value(name, value)


def _row(name: str, variable: str, settings: Settings, raw: Any, source: str) -> Row:
    value = getattr(settings, name)
    if name == "mail_from" and not value:
        from engine.notices import sender_address

        return Row(variable, sender_address(settings), "default: PALANQUEE_ADMIN_EMAIL, else noreply@ the "
                   "host of PALANQUEE_BASE_URL; `palanquee demo` uses noreply@ its list domain")
    return Row(variable, _shown(name, raw, value), source or (DERIVED.get(name, "") if raw is None else ""))


def render(rows: list[Row]) -> str:
    width = max(len(row.variable) for row in rows) + 2
    lines = [f"{row.variable:<{width}}{row.value}" + (f"   ({row.note})" if row.note else "") for row in rows]
    problems = [row.variable for row in rows if row.problem]
    lines.append("")
    lines.append(f"missing or invalid: {', '.join(problems)}" if problems else "every required setting is set")
    lines.append(f"(each is a {PREFIX}* variable, or the same name in lower case without the prefix in the TOML "
                 f"file named by {PREFIX}CONFIG; the environment wins)")
    return "\n".join(lines)
