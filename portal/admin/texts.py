"""Sentences for the engine's refusals and reports (the engine names a code; people read it in their language)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.directory.importer import BadRow
from engine.lists.admin import AdminError
from engine.lists.administrators import Administrator
from engine.lists.models import Domain
from engine.lists.subscribers import BadLine

_ADMIN: dict[str, Callable[[dict[str, Any]], str]] = {
    "control_characters": lambda p: _("Ce champ ne doit contenir ni retour à la ligne ni caractère de contrôle."),
    "bad_local_part": lambda p: _("Adresse de liste invalide : « %(value)s » (lettres minuscules, chiffres, points, "
                                  "tirets et tirets bas « _ » ; ni « + » ni suffixe réservé comme -request).",
                                  value=p.get("value", "")),
    "address_taken": lambda p: _("L’adresse %(address)s est déjà celle d’une liste.", address=p.get("address", "")),
    "address_deleted": lambda p: _("L’adresse %(address)s appartient à une liste supprimée dont l’historique est "
                                   "conservé ; choisissez une autre adresse.", address=p.get("address", "")),
    "address_too_long": lambda p: _("L’adresse %(address)s est trop longue : %(limit)s caractères au plus, domaine "
                                    "compris (RFC 5321, et l’en-tête List-Id qui en est tiré) ; choisissez un nom "
                                    "plus court.", address=p.get("address", ""), limit=p.get("limit", "")),
    "bad_kind": lambda p: _("Type de liste inconnu."),
    "bad_reply_to": lambda p: _("Choix de réponse inconnu."),
    "bad_option": lambda p: _("Réglage de distribution inconnu."),
    "bad_policy": lambda p: _("Règle d’envoi inconnue."),
    "roles_required": lambda p: _("Choisissez au moins un rôle autorisé à écrire."),
    "bad_lines": lambda p: _("Lignes invalides : %(lines)s", lines="; ".join(f"{n} « {c} »" for n, c in p["lines"])),
    "unknown_structure": lambda p: _("Structure inconnue : %(value)s", value=p.get("value", "")),
    "unknown_role": lambda p: _("Rôle inconnu."),
    "bad_structure_kind": lambda p: _("Type de structure inconnu."),
    "not_deleted": lambda p: _("Seule une liste supprimée peut être purgée."),
}


def admin_error(error: AdminError) -> str:
    describe = _ADMIN.get(error.code)
    return describe(error.params) if describe else error.code


ROLE_GROUPS: dict[str, Any] = {  # Role.category → the role picker's group title
    "board": _l("Comité directeur"),
    "commission": _l("Commissions"),
    "instructor": _l("Encadrement (moniteurs)"),
}


def role_group(kind: str) -> str:
    return str(ROLE_GROUPS.get(kind, _l("Autres rôles")))


def domain_choice(domain: Domain) -> str:
    """An option of the domain selector, with the domain's state: a list is born refusing mail on a domain off."""
    if domain.lists_enabled:
        return str(_("%(domain)s (listes activées)", domain=domain.name))
    return str(_("%(domain)s (listes désactivées : la liste refuserait le courrier)", domain=domain.name))


def administrators(told: tuple[Administrator, ...] | list[Administrator]) -> str:
    """Who was told of a creation: "Sophie Lemoine (sophie@…, Fédération …)", or the platform's address."""
    people = []
    for person in told:
        if person.name:
            people.append(_("%(name)s (%(address)s, administration de %(structure)s)", name=person.name,
                            address=person.address, structure=person.structure))
        else:
            people.append(_("l’administration de la plateforme (%(address)s)", address=person.address))
    return ", ".join(people)


def bad_line(line: BadLine) -> str:
    if line.reason == "unknown_licence":
        return str(_("ligne %(number)s : « %(content)s » : numéro de licence inconnu", number=line.number,
                     content=line.content))
    return str(_("ligne %(number)s : « %(content)s » : adresse invalide", number=line.number, content=line.content))


_IMPORT: dict[str, Callable[[BadRow], str]] = {
    "missing": lambda b: _("colonne obligatoire vide : %(value)s", value=b.value),
    "bad_licence": lambda b: _("numéro de licence mal formé « %(value)s »", value=b.value),
    "duplicate": lambda b: _("numéro de licence %(value)s déjà présent ligne %(line)s", value=b.value,
                             line=b.other_line),
    "bad_email": lambda b: _("adresse e-mail invalide « %(value)s »", value=b.value),
    "unknown_club": lambda b: _("club inconnu « %(value)s »", value=b.value),
    "bad_season": lambda b: _("la saison n’est pas une année : « %(value)s »", value=b.value),
    "bad_role": lambda b: _("rôle mal formé « %(value)s »", value=b.value),
    "unknown_role": lambda b: _("rôle inconnu « %(value)s »", value=b.value),
    "unknown_structure": lambda b: _("structure inconnue « %(value)s »", value=b.value),
    "bad_dates": lambda b: _("dates de mandat invalides « %(value)s »", value=b.value),
    "out_of_scope": lambda b: _("%(value)s est hors de votre périmètre", value=b.value),
    "protected": lambda b: _("%(value)s a des droits d’administration : seul un administrateur fédéral peut "
                             "changer son adresse", value=b.value),
    "protected_mandate": lambda b: _("%(value)s a un mandat hors de votre périmètre : seul le personnel qui le "
                                     "couvre peut changer son adresse", value=b.value),
    "protected_list": lambda b: _("%(value)s possède ou modère une liste hors de votre périmètre : seul le "
                                  "personnel qui la couvre peut changer son adresse", value=b.value),
    "database": lambda b: _("enregistrement impossible (%(value)s)", value=b.value),
}


def import_row(row: BadRow) -> str:
    describe = _IMPORT.get(row.reason)
    return describe(row) if describe else row.describe()
