"""HTTP hardening: request size limits (issue 11, finding 13) and the headers of every response (finding 14).

Bodies: ``PALANQUEE_MAX_REQUEST_SIZE`` for every request, ``PALANQUEE_MAX_UPLOAD_SIZE`` for the endpoints of
``LARGE_BODY_ENDPOINTS`` only. A declared length above the limit is answered 413 before anything is read
(before the CSRF check parses the form); a chunked body is cut at the limit by werkzeug as it is read.

The Content-Security-Policy allows nothing from outside the portal: no remote image, style, font or script,
so that a message shown in the captured-mail or moderation previews (an ``<iframe sandbox srcdoc>``, which
inherits the page's policy) cannot tell its sender that someone opened it. Pages carry no inline script
(``portal/static/*.js``). ``frame-ancestors 'none'`` (and X-Frame-Options for older browsers) forbids
framing the portal (clickjacking of its buttons).
"""

from __future__ import annotations

from flask import Flask, Response, abort, request

from engine.config import Settings

LARGE_BODY_ENDPOINTS = frozenset({"admin.import_members"})  # the member import upload

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "img-src 'self' data:",  # no remote image: tracking pixels in previewed mail stay unloaded
    "style-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-src 'self'",
    "frame-ancestors 'none'",
))

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # links carry tokens (/u/…, /mot-de-passe/…): never to other sites
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"  # sent only when the portal is served over HTTPS (PALANQUEE_SECURE_COOKIES=1)


def init_app(app: Flask, settings: Settings) -> None:
    """Limit request bodies, and add the headers to every response (pages, errors, static files, JSON, CSV).

    Call it before the CSRF extension: its check reads the form, which must already be limited.
    """
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_size

    @app.before_request
    def _limit_body() -> None:
        limit = settings.max_upload_size if request.endpoint in LARGE_BODY_ENDPOINTS else settings.max_request_size
        request.max_content_length = limit
        if request.content_length is not None and request.content_length > limit:
            abort(413)

    # Prepared once: (name, its lower case, value). ``Headers.setdefault`` looked each name up through a raised
    # and caught KeyError (about a dozen exceptions a response); one pass over the response's headers does it.
    headers = tuple((name, name.lower(), value) for name, value in
                    dict(HEADERS, **({"Strict-Transport-Security": HSTS} if settings.secure_cookies else {})).items())

    @app.after_request
    def _harden(response: Response) -> Response:
        present = {name.lower() for name, _value in response.headers.items()}
        for name, lower, value in headers:
            if lower not in present:  # a value the view set wins, as with setdefault
                response.headers.add(name, value)
        return response
