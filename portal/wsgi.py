"""WSGI entry point for production servers: ``gunicorn 'portal.wsgi:app'``."""

from __future__ import annotations

from portal import create_app

app = create_app()
