"""The unsubscribe page's buttons carry a form token that needs no session (engine/tokens.py makes it)."""

from __future__ import annotations

from flask import g, request

from engine import tokens

FIELD = "form_token"


def form_token(action: str, link_token: str) -> str:
    return tokens.make_unsubscribe_form_token(g.settings, action, link_token)


def submitted_ok(action: str, link_token: str) -> bool:
    """The button's POST carries a fresh form token made for this action on this link."""
    return tokens.unsubscribe_form_token_ok(g.settings, action, link_token, request.form.get(FIELD))
