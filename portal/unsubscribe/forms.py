"""The unsubscribe pages' buttons: nothing to fill in but the CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm


class ButtonForm(FlaskForm):
    """Confirm or undo; the one-click POST of RFC 8058 does not use it."""
