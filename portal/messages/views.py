"""Message, moderation and captured-mail views."""

from __future__ import annotations

from flask import Blueprint, render_template

from portal.access import staff_required

bp = Blueprint("messages", __name__, url_prefix="/admin/messages")


@bp.get("/")
@staff_required
def index():  # type: ignore[no-untyped-def]
    return render_template("auth/home.html")
