"""Log in and out."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required, login_user, logout_user

from engine.directory.accounts import authenticate
from portal.auth.forms import LoginForm

bp = Blueprint("auth", __name__)


def is_local(target: str | None) -> bool:
    """Only redirect to paths of this site (no scheme, no host, no "//evil")."""
    return bool(target) and target.startswith("/") and not target.startswith("//") and "\\" not in target


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    form = LoginForm()
    if form.validate_on_submit():
        member = authenticate(form.identifier.data, form.password.data)
        if member is not None:
            login_user(member, remember=form.remember.data)
            target = request.args.get("next")
            return redirect(target if is_local(target) else url_for("auth.home"))
        flash(_("Identifiant ou mot de passe incorrect."), "error")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():  # type: ignore[no-untyped-def]
    logout_user()
    return redirect(url_for("auth.login"))


@bp.get("/home")
@login_required
def home():  # type: ignore[no-untyped-def]
    return render_template("auth/home.html")
