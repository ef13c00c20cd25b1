"""How people read what the engine records: audit actions, authors, objects and details, opt-out sources.

The engine writes codes (``list.created``, source ``one-click``, detail ``{"kind": "role"}``, naive-UTC times in
ISO form); this module turns each into words in the reader's language and the federation's time zone, so that
no page shows a dictionary, ``None`` or an ISO timestamp. Policy as data: one table per kind of code. A test
(tests/portal/test_translations.py) checks that every action the code records and every source has its words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import g
from flask_babel import lazy_gettext as _l

from engine.audit import AuditEvent
from engine.directory.models import Role
from engine.posting.reasons import reason_words
from portal.formatting import format_datetime
from portal.rendering import gettext as _
from portal.rendering import text

ACTIONS: dict[str, Any] = {
    "account.activated": _l("Compte activé"),
    "bounce.cleared": _l("Erreurs de distribution effacées"),
    "bounce.disabled": _l("Adresse suspendue (erreurs de distribution)"),
    "bounce.reenabled": _l("Adresse réactivée après des erreurs de distribution"),
    "domain.disabled": _l("Listes d’un domaine désactivées"),
    "domain.enabled": _l("Listes d’un domaine activées"),
    "email_change.applied": _l("Nouvelle adresse mise en service"),
    "email_change.cancelled": _l("Changement d’adresse annulé"),
    "email_change.confirmed": _l("Nouvelle adresse confirmée"),
    "email_change.imposed": _l("Adresse changée par le personnel ou un import"),
    "email_change.restored": _l("Ancienne adresse rétablie"),
    "email_change.requested": _l("Changement d’adresse demandé"),
    "list.bounce_threshold": _l("Seuil d’erreurs de distribution modifié"),
    "list.created": _l("Liste créée"),
    "list.creation_notified": _l("Création de liste notifiée"),
    "list.criteria_changed": _l("Critères modifiés"),
    "list.deleted": _l("Liste supprimée"),
    "list.left": _l("Désabonnement"),
    "list.posting_changed": _l("Règles d’envoi modifiées"),
    "list.purged": _l("Liste purgée"),
    "list.rejoined": _l("Réabonnement"),
    "list.settings_changed": _l("Réglages modifiés"),
    "list.subscribers_added": _l("Abonnés ajoutés"),
    "list.subscribers_removed": _l("Abonnés retirés"),
    "list.subscribers_replaced": _l("Abonnés modifiés"),
    "list.subscribers_welcomed": _l("Message de bienvenue aux nouveaux abonnés"),
    "login.failed": _l("Connexion refusée"),
    "login.succeeded": _l("Connexion"),
    "login.throttled": _l("Connexion bloquée (trop de tentatives)"),
    "member.imported": _l("Licencié mis à jour par import"),
    "members.imported": _l("Import de licenciés"),
    "message.approved": _l("Message accepté"),
    "message.confirmed": _l("Message confirmé par son auteur"),
    "message.held": _l("Message retenu pour modération"),
    "message.rejected": _l("Message refusé"),
    "password.reset": _l("Mot de passe changé"),
    "password.reset_requested": _l("Lien de mot de passe envoyé"),
    "throttle.updated": _l("Débit d’envoi modifié"),
}

ACTORS: dict[str, Any] = {  # AuditEvent.actor_label when no member acted
    "system": _l("le système"),
    "import": _l("import de licenciés"),
    "anonymous": _l("visiteur non connecté"),
    "footer": _l("lien de désabonnement"),
    "one-click": _l("désabonnement en un clic"),
    "mailto": _l("message de désabonnement"),
    "old-address": _l("lien envoyé à l’ancienne adresse"),
}

OBJECTS: dict[str, Any] = {
    "mailing_list": _l("liste"), "member": _l("licencié"), "domain": _l("domaine"),
    "email_change": _l("changement d’adresse"), "message": _l("message"),
}

SOURCES: dict[str, Any] = {  # how someone left a list (OptOut.source), as staff read it
    "footer": _l("lien en bas d’un message"),
    "one-click": _l("bouton « se désabonner » de la messagerie (un clic)"),
    "mailto": _l("message à l’adresse de désabonnement"),
    "espace": _l("Mon espace"),
    "staff": _l("personnel"),
    "bounce": _l("adresse en erreur"),
}

STRUCTURE_KINDS: dict[str, Any] = {"club": _l("clubs"), "departmental": _l("comités départementaux"),
                                   "regional": _l("comités régionaux")}

KEYS: dict[str, Any] = {  # detail keys
    "address": _l("adresse"), "added": _l("ajoutés"), "addresses": _l("adresses autorisées"),
    "author": _l("expéditeur"), "bad_lines": _l("lignes refusées"), "bad_rows": _l("lignes refusées"),
    "created": _l("créés"), "criteria": _l("critères"), "description": _l("description"),
    "domain": _l("domaine"), "effective_at": _l("en service le"), "fields": _l("champs"),
    "hold": _l("autres expéditeurs"), "how": _l("comment"), "kept_addresses": _l("adresses conservées"),
    "kind": _l("type"), "mandates_added": _l("mandats ajoutés"), "mandates_changed": _l("mandats modifiés"),
    "mandates_removed": _l("mandats retirés"), "member_id": _l("licencié n°"), "message_id": _l("message n°"),
    "moderator": _l("modérateur"), "moderators": _l("modérateurs"), "name": _l("nom"), "new": _l("nouvelle"),
    "old": _l("ancienne"), "owner": _l("propriétaire n°"), "policy": _l("qui peut écrire"),
    "reason": _l("raison"), "removed": _l("retirés"), "restored": _l("rétablie"), "reply_to": _l("réponses"), "roles": _l("rôles"),
    "rows": _l("lignes"), "sent": _l("envoyés"), "skipped": _l("non envoyés"), "source": _l("source"), "subject_prefix": _l("préfixe du sujet"),
    "subscriptions_moved": _l("abonnements déplacés"), "template": _l("message envoyé"), "to": _l("à"),
    "unchanged": _l("inchangés"), "updated": _l("mis à jour"),
}

VALUES: dict[str, dict[Any, Any]] = {  # coded values, by detail key
    "kind": {"static": _l("liste d’abonnés"), "role": _l("liste dynamique (par rôle)")},
    "policy": {"members": _l("les membres de la liste"), "roles": _l("les titulaires de certains rôles"),
               "addresses": _l("certaines adresses"), "moderators": _l("les modérateurs seulement"),
               "anyone": _l("tout le monde")},
    "hold": {True: _l("retenus pour modération"), False: _l("refusés avec un avis")},
    "how": {"espace": _l("depuis Mon espace"), "old-address": _l("par le lien envoyé à l’ancienne adresse"),
            "superseded": _l("remplacé par une nouvelle demande"), "staff": _l("par le personnel"),
            "import": _l("par un import")},
    "reply_to": {"author": _l("à l’auteur du message"), "list": _l("à la liste")},
    "template": {"password_reset": _l("nouveau mot de passe"), "account_activation": _l("activation du compte")},
    "source": SOURCES,
    "fields": {**{k: v for k, v in KEYS.items() if k in ("name", "description", "subject_prefix", "reply_to")},
               "owner": _l("propriétaire")},
}


def action_label(action: str) -> str:
    return text(ACTIONS.get(action, action))


def source_label(source: str) -> str:
    return text(SOURCES.get(source, source))


def actor_label(event: AuditEvent) -> str:
    if event.actor_id and event.actor is not None:
        return f"{event.actor.full_name} ({event.actor.licence_number})"
    label = event.actor_label or "system"
    return text(ACTORS.get(label, label))


def object_label(event: AuditEvent) -> str:
    kind = text(OBJECTS.get(event.object_type, event.object_type)) if event.object_type else ""
    if event.object_id is None:
        return kind or "—"
    return _("%(kind)s n° %(number)s", kind=kind, number=event.object_id) if kind else f"n° {event.object_id}"


def details(event: AuditEvent, language: str) -> list[str]:
    """Each detail as "label : value", in words: no ``None``, no dictionary, no ISO time."""
    try:
        found = event.details
    except json.JSONDecodeError:
        return [event.detail]
    return [_pair(KEYS.get(key, key), _value(key, value, language)) for key, value in found.items()
            if value not in (None, "", [], {})]


def _pair(label: Any, value: str) -> str:
    return _("%(label)s : %(value)s", label=text(label), value=value)


_CHOICES: dict[str, list[tuple[str, str]]] = {}


def action_choices(language: str) -> list[tuple[str, str]]:
    """The journal's action filter: every action, and each family (a prefix) first (built once per language)."""
    found = _CHOICES.get(language)
    if found is None:
        found = _CHOICES[language] = _action_choices()
    return found


def _action_choices() -> list[tuple[str, str]]:
    families = {"list.": _l("Listes (toutes les actions)"), "domain.": _l("Domaines (toutes les actions)"),
                "email_change.": _l("Changements d’adresse (toutes les actions)"),
                "login.": _l("Connexions (toutes les actions)"), "message.": _l("Messages (toutes les actions)")}
    choices = [("", str(_l("toutes")))] + [(prefix, str(label)) for prefix, label in families.items()]
    return choices + sorted(((code, str(label)) for code, label in ACTIONS.items()), key=lambda c: c[1])


def _value(key: str, value: Any, language: str) -> str:
    special = _SPECIAL.get(key)
    if special is not None:
        return special(value, language)
    coded = VALUES.get(key)
    if coded is not None:
        if isinstance(value, list):
            return ", ".join(text(coded.get(item, item)) for item in value)
        if isinstance(value, bool | str) and value in coded:
            return text(coded[value])
    return _plain(value)


def _plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(_l("oui") if value else _l("non"))
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value) or "—"
    if isinstance(value, dict):
        return " ; ".join(_pair(KEYS.get(k, k), _plain(v)) for k, v in value.items() if v is not None)
    if isinstance(value, str):
        moment = _iso(value)
        return format_datetime(moment) if moment is not None else value
    return str(value)


def _iso(text: str) -> datetime | None:
    """An ISO time the engine stored (``str(datetime)`` or ``isoformat()``), as naive UTC; else None."""
    if len(text) < 16 or text[4:5] != "-" or text[10:11] not in (" ", "T"):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _role_names(language: str) -> dict[object, str]:
    """Role names by code and by id, read once per request."""
    key = f"journal.roles.{language}"
    if key not in g:
        roles = list(Role.select())
        setattr(g, key, {r.code: r.name(language) for r in roles} | {r.id: r.name(language) for r in roles})
    names: dict[object, str] = getattr(g, key)
    return names


def _roles(value: Any, language: str) -> str:
    """Role codes (posting rules) or ids (criteria), as the roles' names."""
    items = value if isinstance(value, list) else [value]
    names = _role_names(language)
    return ", ".join(str(names.get(item, item)) for item in items) or str(_l("aucun : tous les licenciés"))


def _criteria(value: Any, language: str) -> str:
    """The criteria recorded by list.criteria_changed: one sentence each."""
    if not isinstance(value, list):
        return _plain(value)
    sentences = []
    for criterion in value:
        if not isinstance(criterion, dict):
            sentences.append(_plain(criterion))
            continue
        parts = [str(criterion.get("structure") or "—"), _roles(criterion.get("roles") or [], language)]
        if criterion.get("subtree"):
            parts.append(str(_l("et en dessous")))
        if criterion.get("kind"):
            kind = criterion["kind"]
            parts.append(_("seulement : %(kind)s", kind=STRUCTURE_KINDS.get(kind, kind)))
        if criterion.get("valid_licence"):
            parts.append(str(_l("licence valide")))
        sentences.append(" — ".join(parts))
    return " ; ".join(sentences) or "—"


_SPECIAL: dict[str, Callable[[Any, str], str]] = {
    "roles": _roles,
    "criteria": _criteria,
    "reason": lambda value, language: reason_words(str(value), language),
}
