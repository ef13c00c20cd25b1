"""The baseline of bench/portal.py: a plain Flask profile page, written the ordinary way, on the same database.

Shape (issue 14): a flask-login session, app-wide CSRF protection, a WTForms form of five fields, a Jinja
base layout and page, and three peewee queries on the same database through the same connection pool as
the portal: the member by primary key (flask-login's user loader), the member's current mandates joined with
their structures and roles, and the count of the member's list subscriptions. Nothing in it is tuned: it is
what a Flask page of that shape costs, measured in the same run as the portal's pages.

``gunicorn 'bench.plain_page:app'`` serves it with the same environment as the portal (PALANQUEE_*).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, abort, redirect, render_template, url_for
from flask_login import LoginManager, current_user, login_required, login_user
from flask_wtf import CSRFProtect, FlaskForm
from wtforms import EmailField, SelectField, StringField, TelField
from wtforms.validators import DataRequired, Email, Length, Optional

from engine import clock
from engine import db as engine_db
from engine.config import Settings, load_settings
from engine.directory.models import Mandate, Member, Role, Structure
from engine.lists.models import Subscription


class ProfileForm(FlaskForm):
    first_name = StringField("Prénom", validators=[DataRequired(), Length(max=100)])
    last_name = StringField("Nom", validators=[DataRequired(), Length(max=100)])
    email = EmailField("Adresse e-mail", validators=[DataRequired(), Email(check_deliverability=False)])
    phone = TelField("Téléphone", validators=[Optional(), Length(max=20)])
    language = SelectField("Langue", choices=[("fr", "Français"), ("en", "English")])


def create_plain_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    app.config.update(SECRET_KEY=settings.secret_key, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    database = engine_db.shared(settings.database_url)
    csrf = CSRFProtect(app)
    login_manager = LoginManager(app)
    login_manager.session_protection = "strong"
    login_manager.user_loader(lambda user_id: Member.get_or_none(Member.id == int(user_id.split(":")[0])))

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()

    @app.post("/plain/login/<int:member_id>")
    @csrf.exempt
    def login(member_id: int) -> Any:  # a bench-only door: the session is what the page is measured with
        member = Member.get_or_none(Member.id == member_id) or abort(404)
        login_user(member)
        return redirect(url_for("profile"))

    @app.get("/plain/")
    @login_required
    def profile() -> Any:
        member = current_user
        mandates = list(Mandate.select(Mandate, Role, Structure).join(Role).switch(Mandate).join(Structure)
                        .where((Mandate.member == member.id) & Mandate.current(clock.today(settings.timezone)))
                        .order_by(Structure.depth, Role.rank))
        subscriptions = Subscription.select().where(Subscription.member == member.id).count()
        form = ProfileForm(obj=member)
        return render_template("plain/page.html", member=member, mandates=mandates, subscriptions=subscriptions,
                               form=form)

    return app


def __getattr__(name: str) -> Any:  # ``bench.plain_page:app`` for gunicorn, built on first use
    if name == "app":
        globals()["app"] = made = create_plain_app()
        return made
    raise AttributeError(name)
