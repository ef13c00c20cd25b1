"""Error pages of our own: every HTTP error answers in the user's language, inside the site's layout, with what
happened and where to go next (429 says when to try again). ``register(app)`` is the one line in create_app.

The texts are data (``PAGES``): a status code names a title, an explanation and the next steps offered. An
expired form (Flask-WTF's ``CSRFError``, a 400) gets its own page that links back to the form. Clients that
ask for JSON get ``{"error": code, "message": …}``. A 500 page is rendered without touching the database
when it can, and falls back to a minimal page of its own when even that fails.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound

from engine import clock

log = logging.getLogger(__name__)

CODES = (400, 403, 404, 405, 409, 410, 413, 429, 500)

# status code → (title, what happened, what to do next)
PAGES: dict[int, tuple[Any, Any, Any]] = {
    400: (_l("Demande incorrecte"), _l("La page n’a pas compris ce qui lui a été envoyé ; rien n’a été enregistré."),
          _l("Revenez à la page précédente et recommencez.")),
    403: (_l("Accès refusé"), _l("Votre compte ne permet pas d’ouvrir cette page ni d’y faire cette action."),
          _l("Si vous pensez devoir y accéder, adressez-vous au responsable de votre structure.")),
    404: (_l("Page introuvable"), _l("Cette adresse ne mène à aucune page : elle est peut-être incomplète, "
                                     "ou la page n’existe plus."),
          _l("Vérifiez l’adresse, ou repartez de l’accueil.")),
    405: (_l("Action impossible à cette adresse"),
          _l("Cette adresse ne s’ouvre pas de cette façon : c’est le bouton d’une page qui l’utilise."),
          _l("Retournez à la page qui contient le bouton et utilisez-le.")),
    409: (_l("Déjà fait"), _l("Cette action a déjà été faite, ou ne correspond plus à l’état actuel."),
          _l("Rechargez la page pour voir où en sont les choses.")),
    410: (_l("Plus disponible"), _l("Ce que cette adresse désignait a expiré ou n’existe plus."),
          _l("Repartez de l’accueil ou de Mon espace.")),
    413: (_l("Envoi trop volumineux"), _l("Le fichier ou le texte envoyé dépasse la taille acceptée par le portail."),
          _l("Envoyez un contenu plus petit ; un très gros fichier de licenciés s’importe avec la commande "
             "palanquee import-members.")),
    429: (_l("Trop de demandes"), _l("Trop de demandes sont arrivées en peu de temps ; par sécurité, "
                                     "le portail attend avant d’en accepter d’autres."), None),
    500: (_l("Erreur du portail"), _l("Une erreur imprévue nous empêche de répondre. Elle est enregistrée "
                                      "pour l’équipe technique ; rien n’a été perdu de ce qui était déjà enregistré."),
          _l("Réessayez dans un moment.")),
}
GENERIC = (_l("La demande n’a pas abouti"), _l("Le portail n’a pas pu répondre à cette demande."),
           _l("Revenez à la page précédente et recommencez."))
DEFAULT_RETRY = timedelta(minutes=1)


def register(app: Flask) -> None:
    """Answer every HTTP error (and every unexpected exception, as a 500) with our own page."""
    app.register_error_handler(CSRFError, _expired_form)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _server_error)


def _http_error(error: HTTPException) -> Response | HTTPException:
    if error.code is None or error.code < 400:
        return error  # routing redirects are not errors
    title, what, then = PAGES.get(error.code, GENERIC)
    extra: dict[str, Any] = {}
    if error.code == 429:
        extra = _retry(error)
        then = extra["then_words"]
    response = _respond(error.code, str(title), str(what), str(then), **extra)
    _keep_headers(error, response)
    return response


def _expired_form(error: CSRFError) -> Response:
    """A form posted without its session (cookies cleared, browser restarted): nothing saved, go back to it."""
    again = request.path if _accepts_get(request.path) else _local_referrer()
    return _respond(400, _("Le formulaire a expiré"),
                    _("Ce formulaire n’est valable que pendant la session où la page a été ouverte, et cette "
                      "session a pris fin (navigateur redémarré, cookies effacés, ou déconnexion). "
                      "Rien n’a été enregistré."),
                    _("Ouvrez de nouveau le formulaire et recommencez."), again=again)


def _server_error(error: InternalServerError) -> Response:
    title, what, then = PAGES[500]
    try:
        return _respond(500, str(title), str(what), str(then))
    except Exception:  # the layout itself failed (database down, template error): a page that needs nothing
        log.exception("the 500 page could not be rendered")
        return Response(_MINIMAL, status=500, mimetype="text/html")


def _respond(code: int, title: str, what: str, then: str, **extra: Any) -> Response:
    if _wants_json():
        response = jsonify(error=code, message=f"{title}. {what}")
    else:
        response = Response(render_template("errors/error.html", code=code, title=title, what=what, then=then,
                                            back=_local_referrer(), **extra), mimetype="text/html")
    response.status_code = code
    return response


def _keep_headers(error: HTTPException, response: Response) -> None:
    """What the protocol needs from werkzeug's own answer: Allow on 405 (RFC 9110 §15.5.6), Retry-After on 429."""
    for name, value in error.get_headers():
        if name.lower() in ("allow", "retry-after", "www-authenticate"):
            response.headers[name] = value
    if isinstance(error, MethodNotAllowed) and error.valid_methods and "Allow" not in response.headers:
        response.headers["Allow"] = ", ".join(error.valid_methods)


def _retry(error: HTTPException) -> dict[str, Any]:
    """When to try again: werkzeug's ``retry_after`` (seconds or a moment), else a minute; sets Retry-After."""
    after = getattr(error, "retry_after", None)
    if isinstance(after, datetime):
        moment = after.astimezone(UTC).replace(tzinfo=None) if after.tzinfo else after
        seconds = int((moment - clock.now()).total_seconds())
    elif isinstance(after, int | float):
        seconds = int(after)
    else:
        seconds = int(DEFAULT_RETRY.total_seconds())
    seconds = max(seconds, 1)
    if not isinstance(after, datetime | int | float) or not after:
        error.retry_after = seconds  # type: ignore[attr-defined]  # RFC 9110 §10.2.3
    return {"then_words": retry_after_words(seconds), "retry_seconds": seconds}


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _accepts_get(path: str) -> bool:
    try:
        current_app.url_map.bind("localhost").match(path, method="GET")
    except (NotFound, MethodNotAllowed):
        return False
    except HTTPException:  # a redirect (trailing slash): the page exists
        return True
    return True


def _local_referrer() -> str | None:
    """The page the visitor came from, when it is one of ours (never an outside address)."""
    referrer = request.referrer or ""
    parts = urlsplit(referrer)
    if not referrer or parts.netloc != request.host or parts.scheme not in ("http", "https"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def retry_after_words(seconds: int) -> str:
    """For views that answer 429 themselves: "Réessayez dans 15 minutes, à partir de 14 h 32."."""
    from portal.formatting import format_datetime, format_duration

    rounded = timedelta(minutes=max(1, -(-seconds // 60)))
    return str(_("Réessayez dans %(delay)s, à partir de %(time)s.", delay=format_duration(rounded),
                 time=format_datetime(clock.now() + rounded)))


_MINIMAL = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Erreur du portail · Palanquée</title></head>
<body><main><h1>Erreur du portail</h1>
<p>Une erreur imprévue nous empêche de répondre. Réessayez dans un moment.</p>
<p lang="en">An unexpected error prevents us from answering. Please try again in a moment.</p>
<p><a href="/">Palanquée</a></p></main></body></html>
"""
