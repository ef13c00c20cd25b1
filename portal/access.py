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


def current_list(list_id: int):  # type: ignore[no-untyped-def]
    """The live list ``list_id`` if the logged-in staff member manages it: 404 when absent, 403 outside scope."""
    from engine.lists import admin
    from engine.lists.models import MailingList

    try:
        return admin.get_list(current_user, list_id)
    except MailingList.DoesNotExist:
        abort(404)
    except staff.NotAllowed:
        abort(403)


def client_ip() -> str | None:
    """The address recorded in the audit log (the WSGI server's view; a proxy must set REMOTE_ADDR)."""
    from flask import request

    return request.remote_addr
