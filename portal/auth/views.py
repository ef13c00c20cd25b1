"""Log in (licence number or an address one member uses), log out, forgotten password and first activation.

The rules (who is who, rate limits, what a reset link means) are in engine/directory/accounts.py and
passwords.py; these views validate a form, call one engine function, and render or redirect.
"""

from __future__ import annotations

from typing import TypeGuard
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from engine.directory import accounts, passwords, sessions
from engine.directory.accounts import LoginStatus
from engine.directory.models import Member
from portal.auth.forms import LoginForm, NewPasswordForm, ResetRequestForm
from portal.errors import retry_after_words
from portal.formatting import format_duration

bp = Blueprint("auth", __name__)


def is_local(target: str | None) -> TypeGuard[str]:
    """Only redirect to paths of this site: no scheme, no host, no "//evil", no backslash or control tricks."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    if any(ord(char) < 32 or ord(char) == 127 for char in target):
        return False  # browsers drop tabs and newlines: "/\t/evil.example" would become "//evil.example"
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def start_session(member: Member, remember: bool) -> None:
    """A fresh session for the member (nothing from before the login survives but the chosen language).

    The cookie names a server-side session (``engine.directory.sessions``), not the member: logging out
    ends it for every copy of the cookie (issue 11, finding 8).
    """
    language = session.get("lang")
    session.clear()
    login_user(member, remember=remember, fresh=True)
    session["_user_id"] = sessions.open_session(g.settings, member, remember=remember, ip=request.remote_addr)
    if language:
        session["lang"] = language


def end_session() -> None:
    """Log out: the server-side session ends, and the browser is told to drop the remember cookie."""
    language = session.get("lang")
    sessions.end_session(session.get("_user_id"))
    logout_user()
    forget_cookie = session.get("_remember") == "clear"
    session.clear()
    if forget_cookie:
        session["_remember"] = "clear"
    if language:
        session["lang"] = language


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    if current_user.is_authenticated:
        return redirect(url_for("espace.index"))
    form = LoginForm()
    status, headers = 200, {}
    if form.validate_on_submit():
        result = accounts.login(form.identifier.data, form.password.data, ip=request.remote_addr)
        if result.status is LoginStatus.OK and result.member is not None:
            start_session(result.member, bool(form.remember.data))
            target = request.args.get("next")
            return redirect(target if is_local(target) else url_for("espace.index"))
        if result.status is LoginStatus.AMBIGUOUS:
            flash(_("Plusieurs licenciés utilisent cette adresse : saisissez votre numéro de licence."), "info")
            form.identifier.data = ""
        elif result.status is LoginStatus.THROTTLED:
            wait = int(accounts.WINDOW.total_seconds())
            flash(_("Trop de tentatives de connexion depuis votre connexion.") + " " + retry_after_words(wait) + " "
                  + _("Vous pouvez aussi choisir un nouveau mot de passe avec « Mot de passe oublié »."), "error")
            status, headers = 429, {"Retry-After": str(wait)}  # RFC 6585 §4
        else:
            flash(_("Identifiant ou mot de passe incorrect."), "error")
    return render_template("auth/login.html", form=form), status, headers


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    end_session()
    flash(_("Vous êtes déconnecté(e)."), "info")
    return redirect(url_for("auth.login"))


@bp.get("/home")
def home():  # type: ignore[no-untyped-def]
    return redirect(url_for("espace.index"))


def _reset_request(activation: bool):  # type: ignore[no-untyped-def]
    form = ResetRequestForm()
    if form.validate_on_submit():
        passwords.request_reset(g.settings, form.identifier.data, language=str(get_locale()),
                                ip=request.remote_addr)
        # The same answer whether or not an account matched: the form reveals nobody.
        flash(_("Si ce compte existe et a une adresse e-mail, un lien vient d’y être envoyé. "
                "Il est valable %(delay)s.", delay=format_duration(g.settings.password_reset_max_age)), "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_request.html", form=form, activation=activation)


@bp.route("/mot-de-passe-oublie", methods=["GET", "POST"])
def forgot_password():  # type: ignore[no-untyped-def]
    return _reset_request(activation=False)


@bp.route("/activation", methods=["GET", "POST"])
def activate():  # type: ignore[no-untyped-def]
    return _reset_request(activation=True)


LINK_STATUS = {"invalid": 404, "expired": 410, "used": 410}


@bp.route("/mot-de-passe/<token>", methods=["GET", "POST"])
def reset_password(token: str):  # type: ignore[no-untyped-def]
    try:
        member = passwords.member_for_reset(g.settings, token)
    except passwords.ResetLinkError as exc:
        return render_template("auth/link_error.html", reason=exc.reason), LINK_STATUS[exc.reason]
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            member = passwords.set_password_with_token(g.settings, token, form.password.data, ip=request.remote_addr)
        except passwords.ResetLinkError as exc:
            return render_template("auth/link_error.html", reason=exc.reason), LINK_STATUS[exc.reason]
        except passwords.WeakPassword:
            abort(400)  # the form's own length check stops this first
        # The link proved who this is: log in now, whatever the login limits say (issue 11, finding 7).
        start_session(member, remember=False)
        flash(_("Votre mot de passe est enregistré. Votre numéro de licence est %(licence)s.",
                licence=member.licence_number), "info")
        return redirect(url_for("espace.index"))
    return render_template("auth/new_password.html", form=form, activation=member.password_hash is None,
                           licence_number=member.licence_number)
