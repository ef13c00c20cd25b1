"""Mon espace views."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("espace", __name__, url_prefix="/espace")


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    return render_template("auth/home.html")
