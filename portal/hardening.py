"""HTTP hardening of every response (issue 11, finding 14): the headers below, as data.

The Content-Security-Policy allows nothing from outside the portal: no remote image, style, font or script,
so that a message shown in the captured-mail or moderation previews (an ``<iframe sandbox srcdoc>``, which
inherits the page's policy) cannot tell its sender that someone opened it. Pages carry no inline script
(``portal/static/*.js``). ``frame-ancestors 'none'`` (and X-Frame-Options for older browsers) forbids
framing the portal (clickjacking of its buttons).
"""

from __future__ import annotations

from flask import Flask, Response

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


def init_app(app: Flask, *, https: bool) -> None:
    """Add the headers to every response the app sends (pages, errors, static files, JSON, CSV)."""
    headers = dict(HEADERS, **({"Strict-Transport-Security": HSTS} if https else {}))

    @app.after_request
    def _harden(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response
