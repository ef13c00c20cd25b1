"""Forms of Mon espace: the new address (the pencil), and the CSRF-only forms behind each button."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms.validators import DataRequired, Length


class EmailForm(FlaskForm):
    email = EmailField(_l("Nouvelle adresse e-mail"), validators=[DataRequired(), Length(max=254)])


class ButtonForm(FlaskForm):
    """A button that changes something: nothing to fill in but the CSRF token."""
