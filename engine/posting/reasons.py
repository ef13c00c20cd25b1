"""Why a post was held or set aside, in the reader's language (the moderator's mail, the messages pages).

``Message.reason`` stores the reason the posting rules gave (engine/posting/policy.py: ``RULES`` and
``HELD_REASON``), in English, as a stable key; people read the sentence below in their language. A reason
typed by a moderator who refused a post is shown as typed. A test checks that every reason the rules can
give has its sentences here.
"""

from __future__ import annotations

from engine.posting.policy import HELD_REASON

REASONS: dict[str, dict[str, str]] = {
    HELD_REASON: {
        "fr": "l’expéditeur n’est pas autorisé à écrire à cette liste : message retenu pour modération",
        "en": "the sender is not allowed to post to this list: message held for moderation",
    },
    "bounce or message from an automaton sent to the list address": {
        "fr": "avis de non-remise ou message d’un automate envoyé à l’adresse de la liste",
        "en": "bounce or message from an automaton sent to the list address",
    },
    "automatic reply (RFC 3834 Auto-Submitted)": {
        "fr": "réponse automatique (en-tête Auto-Submitted, RFC 3834)",
        "en": "automatic reply (Auto-Submitted header, RFC 3834)",
    },
    "the From address was not authenticated (no aligned DKIM or SPF pass): held for moderation": {
        "fr": "l’adresse de l’expéditeur n’est pas authentifiée (ni DKIM ni SPF alignés) : message retenu pour "
              "modération",
        "en": "the sender's address was not authenticated (no aligned DKIM or SPF pass): message held for "
              "moderation",
    },
    "the From address was not authenticated (no aligned DKIM or SPF pass): waiting for its author to confirm": {
        "fr": "l’adresse de l’expéditeur n’est pas authentifiée (ni DKIM ni SPF alignés) : en attente de la "
              "confirmation de son auteur",
        "en": "the sender's address was not authenticated (no aligned DKIM or SPF pass): waiting for its author "
              "to confirm",
    },
    "bounce (null return path, RFC 5321 §4.5.5) sent to the list address": {
        "fr": "avis de non-remise (chemin de retour vide, RFC 5321 §4.5.5) envoyé à l’adresse de la liste",
        "en": "bounce (null return path, RFC 5321 §4.5.5) sent to the list address",
    },
    "From an automaton's address (mailer-daemon, noreply, list software): held for moderation": {
        "fr": "message venant de l’adresse d’un automate (mailer-daemon, noreply, logiciel de listes) : retenu "
              "pour modération",
        "en": "sent from an automaton's address (mailer-daemon, noreply, list software): held for moderation",
    },
    "marked Precedence: bulk, junk or list (a forward from another list?): held for moderation": {
        "fr": "message marqué « Precedence: bulk, junk ou list » (transféré d’une autre liste ?) : retenu pour "
              "modération",
        "en": "marked Precedence: bulk, junk or list (a forward from another list?): held for moderation",
    },
    "the From address may post, but the envelope sender is not one of its known addresses "
    "(a forged From?): held for moderation": {
        "fr": "l’adresse de l’expéditeur peut écrire, mais l’expéditeur de l’enveloppe n’est aucune de ses "
              "adresses connues (expéditeur usurpé ?) : message retenu pour modération",
        "en": "the From address may post, but the envelope sender is not one of its known addresses "
              "(a forged From?): message held for moderation",
    },
    # Reasons of earlier versions of the rules, still stored on old messages.
    "bulk or list mail (Precedence) sent to the list address": {
        "fr": "courrier de masse ou d’une autre liste (en-tête Precedence) envoyé à l’adresse de la liste",
        "en": "bulk or list mail (Precedence header) sent to the list address",
    },
}


def reason_words(reason: str, language: str | None) -> str:
    """The sentence for a stored reason in ``language`` (French by default); any other text as it is."""
    words = REASONS.get(reason)
    if words is None:
        return reason
    return words["en" if language == "en" else "fr"]
