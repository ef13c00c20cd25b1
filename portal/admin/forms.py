"""Forms of the staff administration. Fields validate shape only; scope and business rules live in engine/."""

from __future__ import annotations

import unicodedata
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    Form,
    FormField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from engine.directory.models import StructureKind
from engine.lists.models import ListKind, PostPolicy


def single_line(form: Any, field: Any) -> None:
    """Refuse line breaks and control characters: list names and prefixes end up in mail headers."""
    if field.data and any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in field.data):
        raise ValidationError(_l("Ce champ ne doit contenir ni retour à la ligne ni caractère de contrôle."))


class ButtonForm(FlaskForm):
    """A button that changes something: nothing to fill in but the CSRF token."""


class CreateListForm(FlaskForm):
    local_part = StringField(_l("Adresse de la liste (avant le @)"),
                             validators=[DataRequired(), Length(max=64), single_line])
    domain = SelectField(_l("Domaine"), coerce=int)
    name = StringField(_l("Nom de la liste"), validators=[Optional(), Length(max=200), single_line])
    structure = StringField(_l("Structure de la liste"), validators=[DataRequired(), Length(max=300), single_line])
    kind = RadioField(_l("Type"), default=ListKind.STATIC, choices=[
        SelectChoice(ListKind.STATIC, _l("Liste d’abonnés (adresses saisies)")),
        SelectChoice(ListKind.ROLE, _l("Liste dynamique (par rôle)"))])
    owner = StringField(_l("Propriétaire (numéro de licence)"), validators=[Optional(), Length(max=32)])
    subscribers = TextAreaField(_l("Abonnés (une adresse par ligne)"), validators=[Optional()])
    notify = BooleanField(_l("Notifier l’administrateur de la création de la liste"))


class SettingsForm(FlaskForm):
    name = StringField(_l("Nom de la liste"), validators=[DataRequired(), Length(max=200), single_line])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=2000)])
    subject_prefix = StringField(_l("Préfixe du sujet"), validators=[Optional(), Length(max=64), single_line])
    reply_to = SelectField(_l("Réponses"), choices=[SelectChoice("author", _l("à l’auteur du message")),
                                                    SelectChoice("list", _l("à la liste"))])
    owner = StringField(_l("Propriétaire (numéro de licence)"), validators=[Optional(), Length(max=32)])
    # Deliverability (docs/deliverability.md)
    dmarc_mode = SelectField(_l("Expéditeur affiché (DMARC)"), choices=[
        SelectChoice("always", _l("toujours « Auteur via la liste » (recommandé)")),
        SelectChoice("automatic", _l("seulement si le domaine de l’auteur l’exige (p=quarantine ou p=reject)")),
        SelectChoice("never", _l("jamais (l’adresse de l’auteur)"))])
    dmarc_author_in = SelectField(_l("Adresse de l’auteur, quand l’expéditeur est la liste"), choices=[
        SelectChoice("reply-to", _l("en Reply-To (les réponses vont à l’auteur)")), SelectChoice("cc", _l("en copie (Cc)"))])
    sender_check = SelectField(_l("Message d’un membre dont l’adresse n’est pas authentifiée (DKIM, SPF)"), choices=[
        SelectChoice("hold", _l("retenu pour modération")),
        SelectChoice("confirm", _l("diffusé après confirmation par un lien envoyé à l’auteur")),
        SelectChoice("off", _l("diffusé sans vérification (déconseillé)"))])
    arc_seal = BooleanField(_l("Sceller les messages relayés (ARC)"))


class SubscribersForm(FlaskForm):
    subscribers = TextAreaField(_l("Abonnés (une adresse par ligne)"), validators=[Optional()])


class BulkSubscribersForm(FlaskForm):
    lines = TextAreaField(_l("Adresses (une par ligne)"), validators=[DataRequired()])
    action = RadioField(_l("Action"), default="add", choices=[SelectChoice("add", _l("Abonner ces adresses")),
                                                              SelectChoice("remove", _l("Désabonner ces adresses"))])


STRUCTURE_KINDS = [SelectChoice("", _l("toutes")), SelectChoice(StructureKind.CLUB, _l("clubs")),
                   SelectChoice(StructureKind.DEPARTMENTAL, _l("comités départementaux")),
                   SelectChoice(StructureKind.REGIONAL, _l("comités régionaux"))]


class CriterionForm(Form):
    """One criterion: holders of these roles (none: every licensee) in this structure, and below it."""

    structure = StringField(_l("Structure"), validators=[Optional(), Length(max=300)])
    roles = SelectMultipleField(_l("Rôles (aucun : tous les licenciés)"), coerce=int, validators=[Optional()])
    include_subtree = BooleanField(_l("et toutes les structures en dessous"))
    structure_kind = SelectField(_l("seulement les structures de type"), choices=STRUCTURE_KINDS, default="")
    require_valid_licence = BooleanField(_l("licence valide cette saison"), default=True)
    remove = BooleanField(_l("Retirer ce critère"))


class CriteriaForm(FlaskForm):
    criteria = FieldList(FormField(CriterionForm), min_entries=1)


class PostingForm(FlaskForm):
    policy = RadioField(_l("Qui peut écrire à la liste"), choices=[
        SelectChoice(PostPolicy.MEMBERS, _l("les membres de la liste")),
        SelectChoice(PostPolicy.ROLES, _l("les titulaires de certains rôles")),
        SelectChoice(PostPolicy.ADDRESSES, _l("certaines adresses")),
        SelectChoice(PostPolicy.MODERATORS, _l("les modérateurs seulement")),
        SelectChoice(PostPolicy.ANYONE, _l("tout le monde"))])
    hold = RadioField(_l("Messages des autres expéditeurs"), choices=[
        SelectChoice("hold", _l("retenus pour modération")),
        SelectChoice("refuse", _l("refusés avec un avis"))], default="hold")
    roles = SelectMultipleField(_l("Rôles autorisés"), coerce=int, validators=[Optional()])
    role_structure = StringField(_l("dans la structure (et en dessous)"), validators=[Optional(), Length(max=300)])
    addresses = TextAreaField(_l("Adresses autorisées (une par ligne)"), validators=[Optional()])
    moderators = TextAreaField(_l("Modérateurs (numéro de licence ou adresse, un par ligne)"),
                               validators=[Optional()])


class ImportForm(FlaskForm):
    file = FileField(_l("Fichier CSV de la fédération"), validators=[FileRequired()])
    overwrite = BooleanField(_l("Remplacer aussi les adresses modifiées par les licenciés eux-mêmes"))


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    action = SelectField(_l("Action"), choices=[], validators=[Optional()])  # choices: portal.admin.journal
    object_type = SelectField(_l("Objet"), choices=[
        SelectChoice("", _l("tous")), SelectChoice("mailing_list", _l("liste")),
        SelectChoice("member", _l("licencié")), SelectChoice("domain", _l("domaine"))], validators=[Optional()])
    object_id = StringField(_l("Numéro de l’objet"), validators=[Optional(), Length(max=12)])
    actor = StringField(_l("Auteur (numéro de licence, « import », « system »)"), validators=[Optional(), Length(max=64)])
    since = DateField(_l("Depuis le"), validators=[Optional()])
    until = DateField(_l("Jusqu’au"), validators=[Optional()])
