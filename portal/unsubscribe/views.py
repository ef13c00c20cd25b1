"""Public unsubscribe pages (no login, no cookie): ``GET /u/<token>`` shows the list and a confirm button and
changes nothing (mail scanners follow links); the button unsubscribes; ``POST`` with the body
``List-Unsubscribe=One-Click`` (RFC 8058 §3.2) unsubscribes at once.

The link's signed token is the proof of who leaves, so no view here needs a session: a tab restored after a
browser restart, a mail app that blocks cookies, or a link opened on another device all work. The buttons
carry a form token tied to the link (``portal.unsubscribe.forms``); a stale or missing one shows the page
again with a fresh token instead of an error.

Failures only (a forged or damaged token, a POST with neither the one-click body nor the button's form token)
are counted per client address (``throttle.UNSUBSCRIBE_FAILURES``); past the limit that address gets 429 on
every page here until its failures age out. Valid links from an address that does not fail always pass, so a
provider posting one-click for thousands of members from a few servers is never refused (docs/security.md).
"""

from __future__ import annotations

from flask import Blueprint, g, render_template, request

from engine import tokens
from engine.directory import throttle
from engine.lists import optouts
from portal.extensions import csrf
from portal.unsubscribe import forms

bp = Blueprint("unsubscribe", __name__)
PLAIN = {"Content-Type": "text/plain; charset=utf-8"}
TOO_MANY = ("Trop de liens invalides depuis votre connexion : réessayez dans quelques minutes.\n"
            "Too many invalid links from your connection: try again in a few minutes.\n")


@bp.before_request
def refuse_failing_clients():  # type: ignore[no-untyped-def]
    """429 for a client address past its failures (RFC 6585 §4), before any token is looked at."""
    if throttle.refused(throttle.UNSUBSCRIBE_FAILURES, request.remote_addr):
        wait = int(throttle.UNSUBSCRIBE_FAILURES.window.total_seconds())
        return TOO_MANY, 429, {**PLAIN, "Retry-After": str(wait)}
    return None


def _failed() -> None:
    throttle.failed(throttle.UNSUBSCRIBE_FAILURES, request.remote_addr)


def _invalid(*, count: bool = True):  # type: ignore[no-untyped-def]
    if count:
        _failed()
    return render_template("unsubscribe/invalid.html"), 404


def _confirm_page(token: str, *, again: bool = False):  # type: ignore[no-untyped-def]
    """The page of the link: what it would do, and the one button that does it (leave, or rejoin). ``again``:
    the POST that led here had no valid form token, a failure counted once (with the token's, if bad)."""
    try:
        outcome = optouts.describe_unsubscribe(g.settings, token)
    except tokens.BadToken:
        return _invalid()
    except optouts.UnknownList:  # a genuine token of a deleted list: not an attack, not counted
        return _invalid(count=again)
    if again:
        _failed()
    action = "rejoin" if outcome.already_out else "leave"
    return render_template("unsubscribe/confirm.html", outcome=outcome, token=token, again=again,
                           form_token=forms.form_token(action, token), field=forms.FIELD)


@bp.get("/u/<token>")
def confirm_page(token: str):  # type: ignore[no-untyped-def]
    return _confirm_page(token)


@bp.post("/u/<token>")
@csrf.exempt  # RFC 8058: the one-click POST carries no cookie; the button's POST carries its own form token
def unsubscribe(token: str):  # type: ignore[no-untyped-def]
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    if not one_click and not forms.submitted_ok("leave", token):
        return _confirm_page(token, again=True)
    try:
        outcome = optouts.unsubscribe_with_token(g.settings, token, "one-click" if one_click else "footer",
                                                 ip=request.remote_addr)
    except (tokens.BadToken, optouts.UnknownList) as error:
        if isinstance(error, tokens.BadToken):
            _failed()
        if one_click:
            return "unknown or invalid unsubscribe link\n", 404, PLAIN
        return _invalid(count=False)
    if one_click:
        return "unsubscribed\n", 200, PLAIN
    return render_template("unsubscribe/done.html", outcome=outcome, token=token,
                           form_token=forms.form_token("rejoin", token), field=forms.FIELD)


@bp.post("/u/<token>/reabonnement")
@csrf.exempt  # the link's token is the proof; the button carries its own form token
def rejoin(token: str):  # type: ignore[no-untyped-def]
    if not forms.submitted_ok("rejoin", token):
        return _confirm_page(token, again=True)
    try:
        outcome = optouts.rejoin_with_token(g.settings, token, ip=request.remote_addr)
    except (tokens.BadToken, optouts.UnknownList) as error:
        return _invalid(count=isinstance(error, tokens.BadToken))
    return render_template("unsubscribe/rejoined.html", outcome=outcome, token=token)
