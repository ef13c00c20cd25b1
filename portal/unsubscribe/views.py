"""Public unsubscribe pages (no login): ``GET /u/<token>`` shows the list and a confirm button and changes
nothing (mail scanners follow links); the button unsubscribes; ``POST`` with the body
``List-Unsubscribe=One-Click`` (RFC 8058 §3.2) unsubscribes at once, without cookies or CSRF token.
"""

from __future__ import annotations

from flask import Blueprint, abort, g, render_template, request
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from engine import tokens
from engine.lists import optouts
from portal.extensions import csrf
from portal.unsubscribe.forms import ButtonForm

bp = Blueprint("unsubscribe", __name__)


def _settings():  # type: ignore[no-untyped-def]
    return g.settings


def _invalid():  # type: ignore[no-untyped-def]
    return render_template("unsubscribe/invalid.html"), 404


@bp.get("/u/<token>")
def confirm_page(token: str):  # type: ignore[no-untyped-def]
    try:
        outcome = optouts.describe_unsubscribe(_settings(), token)
    except (tokens.BadToken, optouts.UnknownList):
        return _invalid()
    return render_template("unsubscribe/confirm.html", outcome=outcome, form=ButtonForm(), token=token)


@bp.post("/u/<token>")
@csrf.exempt  # RFC 8058: the one-click POST carries no cookie and no token; the button's POST is checked below
def unsubscribe(token: str):  # type: ignore[no-untyped-def]
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    if not one_click:
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as exc:
            raise CSRFError(str(exc)) from exc
    try:
        outcome = optouts.unsubscribe_with_token(_settings(), token, "one-click" if one_click else "footer",
                                                 ip=request.remote_addr)
    except (tokens.BadToken, optouts.UnknownList):
        if one_click:
            return "unknown or invalid unsubscribe link\n", 404, {"Content-Type": "text/plain; charset=utf-8"}
        return _invalid()
    if one_click:
        return "unsubscribed\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template("unsubscribe/done.html", outcome=outcome, form=ButtonForm(), token=token)


@bp.post("/u/<token>/reabonnement")
def rejoin(token: str):  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        outcome = optouts.rejoin_with_token(_settings(), token, ip=request.remote_addr)
    except (tokens.BadToken, optouts.UnknownList):
        return _invalid()
    return render_template("unsubscribe/rejoined.html", outcome=outcome)
