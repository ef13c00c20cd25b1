"""The link an author opens to confirm a post whose From was not authenticated (engine/posting/confirmation.py).

The signed token is the authority (no login); a GET shows the post and a button, only the POST releases it.
"""

from __future__ import annotations

import contextlib

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from engine import tokens
from engine.posting import confirmation, moderation
from portal.messages.views import _preview

bp = Blueprint("post_confirm", __name__)


@bp.route("/confirmer/<token>", methods=["GET", "POST"])
def by_link(token: str):  # type: ignore[no-untyped-def]
    settings = current_app.extensions["palanquee.settings"]
    try:
        message = confirmation.load(settings, token)
    except tokens.ExpiredToken:
        return render_template("messages/confirm_post.html", invalid=True, expired=True), 410
    except tokens.BadToken:
        return render_template("messages/confirm_post.html", invalid=True, expired=False), 404
    if request.method == "POST":
        with contextlib.suppress(moderation.NotHeld):  # already decided: the page shows the state
            confirmation.confirm(settings, message)
        return redirect(url_for("post_confirm.by_link", token=token))
    return render_template("messages/confirm_post.html", invalid=False, message=message, token=token,
                           preview=_preview(bytes(message.content)))
