"""Forms of authentication: login, forgotten password / first activation, new password."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from engine.directory.passwords import MAX_LENGTH, MIN_LENGTH


class LoginForm(FlaskForm):
    identifier = StringField(_l("Numéro de licence ou adresse e-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Mot de passe"), validators=[DataRequired(), Length(max=MAX_LENGTH)])
    remember = BooleanField(_l("Rester connecté(e) sur cet appareil"))


class ResetRequestForm(FlaskForm):
    identifier = StringField(_l("Numéro de licence ou adresse e-mail"), validators=[DataRequired(), Length(max=254)])


class NewPasswordForm(FlaskForm):
    password = PasswordField(_l("Nouveau mot de passe"), validators=[
        DataRequired(), Length(min=MIN_LENGTH, max=MAX_LENGTH,
                               message=_l("Entre %(min)d et %(max)d caractères.", min=MIN_LENGTH, max=MAX_LENGTH))])
    confirm = PasswordField(_l("Le même, une seconde fois"), validators=[
        DataRequired(), EqualTo("password", message=_l("Les deux mots de passe diffèrent."))])
