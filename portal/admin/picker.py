"""The structure picker of the staff forms: a text field with a list of the structures the staff member manages
("CODE — Name", searchable by name and by code as one types), and the field errors for what cannot be used.

A code, a picked "CODE — Name" or an exact name are all understood. An unknown structure and one outside the
staff member's scopes are field errors: the form is shown again with everything typed (the engine refuses
such a structure too, with ``NotAllowed``, for a forged form).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import peewee as pw
from flask_babel import gettext as _
from flask_login import current_user

from engine.directory import labels, staff
from engine.directory.models import Structure
from engine.prepared import Prepared, slot

SEPARATOR = " — "
_BY_CODE: Prepared[Structure] = Prepared(lambda: Structure.select().where(Structure.code == slot("code")))


def value_of(structure: Structure | None) -> str:
    """What the field shows for a structure: "CR-PROV — Comité régional Provence-Alpes-Côte d'Azur"."""
    return f"{structure.code}{SEPARATOR}{structure.name}" if structure is not None else ""


def choices() -> tuple[tuple[tuple[str, str], ...], int]:
    """What the picker's choices depend on: the staff member's scopes (their path bounds) and the version of the
    structures' names (``labels``: a new, deleted or renamed structure changes it). The datalist is rendered
    once per value (``rendering.fragment``): a region's 1,600 options are not read and written on every page."""
    return tuple(scope.subtree_bounds() for scope in staff.scopes(current_user)), labels.current_version()


def options_within(bounds: tuple[tuple[str, str], ...]) -> list[str]:
    """Every structure whose path lies within one of ``bounds``, as the picker shows it, in tree order."""
    if not bounds:
        return []
    inside = functools.reduce(operator.or_, [(Structure.path >= low) & (Structure.path < high) for low, high in bounds])
    query = Structure.select(Structure.code, Structure.name).where(inside).order_by(Structure.path).tuples()
    return [f"{code}{SEPARATOR}{name}" for code, name in query.iterator()]


def find(text: str) -> Structure | None:
    """The structure a picker value names: by code (before " — " when picked), else by its exact name."""
    value = " ".join((text or "").split())
    if not value:
        return None
    code = value.split(SEPARATOR.strip(), 1)[0].strip().upper() if SEPARATOR.strip() in value else value.upper()
    found = _BY_CODE.first(code=code)
    if found is None:
        named = list(Structure.select().where(pw.fn.LOWER(Structure.name) == value.lower()).limit(2))
        found = named[0] if len(named) == 1 else None
    return found


def structure_from(field: Any) -> Structure | None:
    """The structure the field names, if the staff member manages it; otherwise a field error and ``None``."""
    structure = find(field.data or "")
    if structure is None:
        typed = (field.data or "").strip()[:80]
        _add_error(field, _("Structure inconnue : « %(value)s ». Choisissez-la dans la liste proposée en tapant "
                            "son nom ou son code.", value=typed))
    elif not staff.can_manage(current_user, structure):
        _add_error(field, _("%(name)s (%(code)s) est hors de votre périmètre : choisissez une structure que vous "
                            "gérez.", name=structure.name, code=structure.code))
        structure = None
    return structure


def _add_error(field: Any, message: str) -> None:
    field.errors = [*field.errors, message]  # a tuple until the form has been validated


def role_checks(field: Any, groups: Any) -> tuple[Any, ...]:
    """What the role picker's checkboxes show (admin/_role_checks.html, kept per value by ``fragment``): the
    field's name and id, the roles checked, the groups of roles with their names (``role_groups``)."""
    return (field.name, field.id, frozenset(field.data or ()), groups)
