"""Template helpers that a page calls dozens of times, made cheap: translations, ``url_for``, shared fragments.

Flask-Babel looks the request's translations up again for every string, and Jinja reaches ``_`` through two
more calls; ``url_for`` asks werkzeug's router to build the same few addresses on every page. Both answers are
fixed for a request (the translations) or for the application (an address from an endpoint and its values),
so they are kept: on the request's ``g`` like Flask-Babel keeps the locale, and in a bounded dictionary.
Flask-WTF parses WTForms' own catalogue (its built-in error messages) again for every request that shows a
form; the parsed catalogue is kept per language (``_WTFormsTranslations``).
``fragment`` renders a small template whose output depends only on one hashable item and the language (a row
of Mes listes: thousands of members share it) once, and keeps the HTML.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import lru_cache
from typing import Any

from babel import numbers, support
from flask import Flask, current_app, g, has_app_context, render_template, request, session, url_for
from flask_babel import LazyString, get_locale, get_timezone, get_translations
from flask_wtf import form as flask_wtf_form
from flask_wtf.csrf import generate_csrf
from jinja2.nodes import EvalContext
from jinja2.utils import pass_eval_context
from markupsafe import Markup
from wtforms.i18n import messages_path

URLS_KEPT = 4096
FRAGMENTS_KEPT = 16384


def _translations() -> Any:
    """The request's translations, looked up once (cached on ``g``, where Flask-Babel caches the locale)."""
    found = g.get("_palanquee_translations")
    if found is None:
        found = g._palanquee_translations = get_translations()
    return found


@pass_eval_context
def _underscore(eval_ctx: EvalContext, string: str, **variables: Any) -> str:
    """Jinja's newstyle ``_``: translate, escape the variables when autoescaping, and always apply ``%``."""
    translated = _translations().ugettext(string)
    return (Markup(translated) if eval_ctx.autoescape else translated) % variables


def _url_maker(app: Flask) -> Any:
    known: dict[tuple[Any, ...], str] = {}

    def cached_url_for(endpoint: str, **values: Any) -> str:
        """``url_for``, remembered for absolute endpoints built with plain values (not ``_external`` and friends)."""
        if endpoint.startswith(".") or any(name.startswith("_") for name in values):
            return url_for(endpoint, **values)
        key = (request.script_root, endpoint, *sorted(values.items()))
        try:
            found = known.get(key)
        except TypeError:  # a value that cannot be a key (a list): built each time
            return url_for(endpoint, **values)
        if found is None:
            found = url_for(endpoint, **values)
            if len(known) >= URLS_KEPT:
                known.clear()
            known[key] = found
        return found

    return cached_url_for


@lru_cache(maxsize=FRAGMENTS_KEPT)
def _fragment(template: str, item: Hashable, language: str, where: tuple[str, str]) -> Markup:
    return Markup(render_template(template, item=item, language=language))


def fragment_cache_clear() -> None:
    """Forget every kept fragment (benchmarks measure a page with nothing kept)."""
    _fragment.cache_clear()


def where() -> tuple[str, tuple[str, str]]:
    """The request's language, and its time zone and script root: looked up once a request."""
    found: tuple[str, tuple[str, str]] | None = g.get("_palanquee_where")
    if found is None:
        found = g._palanquee_where = (str(get_locale()), (str(get_timezone()), request.script_root))
    return found


def fragment(template: str, item: Hashable) -> Markup:
    """``template`` rendered with ``item`` and ``language``, kept per item, language, time zone and script root.

    Only for templates that read nothing else: no form, no CSRF token, no user, no flashed message.
    """
    found = where()
    return _fragment(template, item, found[0], found[1])


_SIGNED_KEPT: dict[tuple[Any, str], str] = {}


def csrf_token() -> str:
    """Flask-WTF's ``generate_csrf()``, its signed token kept per session's raw token.

    Flask-WTF signs the session's raw token again in every request (an HMAC and a timestamp); with
    ``WTF_CSRF_TIME_LIMIT`` off (a token lives as long as its session) any signed copy of the same raw token
    is as valid as a new one, so the first one made is kept (bounded; per secret key) and put where
    ``generate_csrf`` caches it for the request (``g.csrf_token``). With a time limit, nothing is kept.
    """
    found = g.get("csrf_token")
    if found is not None:
        return str(found)
    raw = session.get("csrf_token")
    config = current_app.config
    keep = config.get("WTF_CSRF_TIME_LIMIT") is None and config.get("WTF_CSRF_FIELD_NAME") == "csrf_token"
    secret = config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
    if keep and isinstance(raw, str):
        signed = _SIGNED_KEPT.get((secret, raw))
        if signed is not None:
            g.csrf_token = signed
            return signed
    signed = str(generate_csrf())
    raw = session.get("csrf_token")  # made by generate_csrf when the session had none
    if keep and isinstance(raw, str):
        if len(_SIGNED_KEPT) >= URLS_KEPT:
            _SIGNED_KEPT.clear()
        _SIGNED_KEPT[(secret, raw)] = signed
    return signed


def gettext(string: str, **variables: Any) -> str:
    """Flask-Babel's ``gettext`` (``%`` applied only with variables) on the request's cached translations
    (outside an application context, Flask-Babel's own answer: the source strings)."""
    translations = _translations() if has_app_context() else get_translations()
    translated = str(translations.ugettext(string))
    return translated % variables if variables else translated


def text(value: Any) -> str:
    """``str(value)`` for a ``lazy_gettext`` string without variables, through the request's cached
    translations (``str()`` asks Flask-Babel for the translations again); anything else through ``str``."""
    if isinstance(value, LazyString) and not value._kwargs and len(value._args) == 1 and has_app_context():
        return str(_translations().ugettext(value._args[0]))
    return str(value)


def _percent_maker() -> Any:
    known: dict[tuple[Any, ...], str] = {}

    def percentformat(number: float, format: str | None = None) -> str:
        """Flask-Babel's ``percentformat``, remembered per value, format and locale (a page of message
        figures formats hundreds of rates, babel parses the pattern each time)."""
        locale = get_locale()
        key = (number, format, str(locale))
        found = known.get(key)
        if found is None:
            found = numbers.format_percent(number, format=format, locale=locale)
            if len(known) >= URLS_KEPT:
                known.clear()
            known[key] = found
        return found

    return percentformat


@lru_cache(maxsize=16)
def _wtforms_catalogue(locale: str) -> Any:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class _WTFormsTranslations:
    """What Flask-WTF hands WTForms for its built-in messages: its own object parses WTForms' catalogue again in
    every request that builds a form (``flask_wtf.i18n``); this one reads it parsed once per language."""

    def gettext(self, string: str) -> str:
        return str(_wtforms_catalogue(str(get_locale())).ugettext(string))

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return str(_wtforms_catalogue(str(get_locale())).ungettext(singular, plural, n))


def install(app: Flask) -> None:
    """Put the cheap ``_``, ``gettext``, ``ngettext`` and ``url_for`` in the application's Jinja environment."""
    # install_gettext_callables is added to the environment by Jinja's i18n extension (Flask-Babel loads it)
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: _translations().ugettext(s),
        ngettext=lambda s, p, n: _translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
    )
    app.jinja_env.globals["_"] = _underscore
    app.jinja_env.globals["url_for"] = _url_maker(app)
    app.jinja_env.globals["fragment"] = fragment
    app.jinja_env.filters["percentformat"] = _percent_maker()
    # FlaskForm.Meta.get_translations returns flask_wtf.form's module-level ``translations`` (read at each call)
    flask_wtf_form.translations = _WTFormsTranslations()
