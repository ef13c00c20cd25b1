"""The portal: Flask pages for members (Mon espace), staff (administration) and recipients (unsubscribe)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from babel import Locale
from flask import Flask, g, request, session
from flask_login import current_user

from engine import db as engine_db
from engine.config import Settings, load_settings
from engine.directory.models import Member
from portal import errors, hardening, health, rendering
from portal.extensions import babel, csrf, login_manager

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("fr", "en")


def create_app(settings: Settings | None = None, *, check_schema: bool = True,
               config: Mapping[str, Any] | None = None) -> Flask:
    """Build the portal for ``settings`` (read from the environment when not given).

    ``check_schema`` refuses to build an app on a database that is behind (``palanquee db upgrade``).
    ``config`` is extra Flask configuration (tests pass ``TESTING`` and friends).
    """
    settings = settings or load_settings()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder="static",
                instance_path=str(settings.instance))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_DURATION=settings.remember_max_age,
        BABEL_DEFAULT_LOCALE=settings.default_language,
        BABEL_DEFAULT_TIMEZONE=str(settings.timezone),
        BABEL_TRANSLATION_DIRECTORIES=str(ROOT / "portal" / "translations"),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    app.config.update(config or {})
    app.extensions["palanquee.settings"] = settings

    database = engine_db.shared(settings.database_url)
    if check_schema:
        opened = database.connect(reuse_if_open=True)
        try:
            engine_db.check_schema(database)
        finally:
            if opened:  # nothing left open for a forking server's workers to inherit
                engine_db.disconnect(database)
    _init_database_hooks(app, database)

    hardening.init_app(app, settings)  # body limits first: the CSRF check reads the form
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = "strong"
    babel.init_app(app, locale_selector=_select_locale, timezone_selector=lambda: str(settings.timezone))
    rendering.install(app)

    _register_blueprints(app)
    errors.register(app)
    _register_template_helpers(app)
    _register_commands(app)
    return app


def _register_commands(app: Flask) -> None:
    from portal.cli import ALL_COMMANDS

    for command in ALL_COMMANDS:
        app.cli.add_command(command)


def _init_database_hooks(app: Flask, database: Any) -> None:
    """A request checks a connection out of the pool and back in (opened once per worker, not per request)."""

    @app.before_request
    def _connect() -> None:
        if request.endpoint != health.ENDPOINT:  # /healthz answers 503 itself when the database is away
            database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()


_LOCALES = {code: Locale.parse(code) for code in LANGUAGES}  # parsed once: Flask-Babel parses a string per request


def _select_locale() -> Locale:
    chosen = request.args.get("lang") or session.get("lang")
    if chosen in LANGUAGES:
        return _LOCALES[chosen]
    user = current_user._get_current_object()  # one look-up through the proxy, not three
    if user is not None and getattr(user, "is_authenticated", False) and user.language in LANGUAGES:
        return _LOCALES[user.language]
    return _LOCALES[request.accept_languages.best_match(LANGUAGES) or "fr"]


@login_manager.user_loader
def _load_user(user_id: str) -> Member | None:
    # The session (and remember) cookie holds a server-side session's key (engine/directory/sessions.py).
    from engine.directory import sessions

    return sessions.member_for(user_id)


def _register_blueprints(app: Flask) -> None:
    from portal.admin.views import bp as admin_bp
    from portal.auth.views import bp as auth_bp
    from portal.espace.views import bp as espace_bp
    from portal.main import bp as main_bp
    from portal.messages.confirm import bp as post_confirm_bp
    from portal.messages.views import bp as messages_bp
    from portal.messages.views import moderation_bp
    from portal.unsubscribe.views import bp as unsubscribe_bp

    for blueprint in (main_bp, auth_bp, espace_bp, unsubscribe_bp, admin_bp, messages_bp, moderation_bp,
                      post_confirm_bp, health.bp):
        app.register_blueprint(blueprint)


def _register_template_helpers(app: Flask) -> None:
    from portal import formatting

    app.jinja_env.filters["date_fr"] = formatting.format_date
    app.jinja_env.filters["datetime_fr"] = formatting.format_datetime

    @app.context_processor
    def _inject() -> dict[str, Any]:
        from flask_babel import get_locale

        return {"languages": LANGUAGES, "settings": settings_of(app), "get_locale": get_locale,
                "is_staff": current_is_staff}

    @app.before_request
    def _remember_language() -> None:
        if request.args.get("lang") in LANGUAGES:
            session["lang"] = request.args["lang"]
        g.settings = settings_of(app)


def current_is_staff() -> bool:
    """For the navigation: whether the logged-in member holds a staff scope (cached per request)."""
    from engine.directory import staff

    if "is_staff" not in g:
        user = current_user._get_current_object()
        g.is_staff = bool(user is not None and getattr(user, "is_authenticated", False) and staff.is_staff(user))
    return bool(g.is_staff)


def settings_of(app: Flask) -> Settings:
    return app.extensions["palanquee.settings"]  # type: ignore[no-any-return]
