"""Access rules shared by the staff blueprints: who is staff, and which structures they may touch."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort
from flask_login import current_user, login_required

from engine.directory import staff
from engine.directory.models import Structure


def staff_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Log in first; then 403 for anyone who holds no staff scope."""

    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not staff.is_staff(current_user):
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def require_structure(structure: Structure) -> None:
    """403 unless the logged-in staff member manages ``structure`` (their scopes and below)."""
    if not staff.can_manage(current_user, structure):
        abort(403)
