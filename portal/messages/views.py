"""Staff pages of the list engine: messages and their delivery progress, moderation, captured mail.

Staff see the messages of the lists whose structure they manage; a federation administrator sees
all. The moderation link mailed to moderators (``/moderation/<token>``) works without logging in:
the signed token is the authority, and a GET only shows the post (mail scanners follow links).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import datetime
from email.message import EmailMessage
from typing import NamedTuple

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import get_locale, get_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from engine import tokens
from engine.bounces import stats
from engine.outbound import mail
from engine.posting import listing, moderation, queries
from engine.posting.models import Message, MessageState
from engine.posting.reasons import reason_words
from engine.posting.render import parse, part_text
from portal import rendering
from portal.access import staff_required
from portal.formatting import format_mail_date

bp = Blueprint("messages", __name__, url_prefix="/admin/messages")
# the headers a reader of a stored or captured message is shown, with their names in the reader's language
HEADERS = (("From", _l("De")), ("To", _l("À")), ("Delivered-To", _l("Remis à")),
           ("Subject", _l("Objet du message")), ("Date", _l("Date")), ("List-Id", _l("Liste (List-Id)")),
           ("List-Unsubscribe", _l("Désabonnement (List-Unsubscribe)")))
moderation_bp = Blueprint("moderation", __name__)

# The words for message and delivery states (messages/_macros.html's state_label): translated one at a time, not
# a dictionary of twelve built for every row of the page.
STATE_LABELS = {
    "received": _l("reçu"), "held": _l("en attente de modération"), "accepted": _l("accepté"),
    "expanding": _l("calcul des destinataires"), "sending": _l("envoi en cours"), "done": _l("envoyé"),
    "rejected": _l("refusé"), "discarded": _l("écarté (boucle, rebond ou réponse automatique)"),
    "queued": _l("en file"), "sent": _l("remis"), "deferred": _l("différé"), "failed": _l("échec"),
}


@bp.app_template_global()
def state_label_text(state: str) -> str:
    """The word for a state in the request's language (through its translations looked up once)."""
    return rendering.text(STATE_LABELS.get(state, state))
PER_PAGE = 50


def _settings():  # type: ignore[no-untyped-def]
    return current_app.extensions["palanquee.settings"]


def _language() -> str:
    return "en" if str(get_locale()).startswith("en") else "fr"


def _page() -> int:
    page = request.args.get("page", "1")
    return max(1, int(page)) if page.isdigit() else 1


def _visible(message_id: int) -> Message:
    message = listing.message_with_list(message_id)
    if message is None or not queries.may_see(current_user, message):
        abort(404)  # another structure's message does not exist for this staff member
    return message


@bp.get("/")
@staff_required
def index():  # type: ignore[no-untyped-def]
    page = _page()
    messages, total, held = listing.page_of_messages(current_user, page, PER_PAGE)  # compiled per scopes
    figures = stats.message_figures(messages)
    lines = [MessageLine.of(message, figures[message.id]) for message in messages]
    return render_template("messages/index.html", lines=lines, held=held, page=page, total=total, per_page=PER_PAGE)


class MessageLine(NamedTuple):
    """What a row of the messages page shows: the row's HTML is kept per value (``rendering.fragment``)."""

    id: int
    received_at: datetime
    subject: str
    author: str
    list_id: int
    address: str
    state: str
    recipient_count: int
    sent: int
    sent_rate: float | None
    deferred: int
    deferred_rate: float | None
    failed: int
    failed_rate: float | None
    bounced: int
    bounced_rate: float | None
    unsubscribed: int
    unsubscribed_rate: float | None

    @classmethod
    def of(cls, m: listing.MessageRow, f: stats.Figures) -> MessageLine:
        return cls(m.id, m.received_at, m.subject, m.author, m.mailing_list_id, m.address, m.state,
                   m.recipient_count, f.sent, f.sent_rate, f.deferred, f.deferred_rate, f.failed, f.failed_rate,
                   f.bounced, f.bounced_rate, f.unsubscribed, f.unsubscribed_rate)


@bp.get("/<int:message_id>")
@staff_required
def detail(message_id: int):  # type: ignore[no-untyped-def]
    message = _visible(message_id)
    page = _page()
    return render_template("messages/detail.html", message=message, progress=queries.progress(message),
                           figures=stats.message_figures([message])[message.id],
                           reason=reason_words(message.reason, _language()),
                           problems=queries.problems(message, (page - 1) * PER_PAGE, PER_PAGE), page=page,
                           preview=_preview(bytes(message.content)), per_page=PER_PAGE)


@bp.get("/<int:message_id>/progress.json")
@staff_required
def progress(message_id: int):  # type: ignore[no-untyped-def]
    return jsonify(queries.progress(_visible(message_id)).as_dict())


@bp.post("/<int:message_id>/decide")
@staff_required
def decide(message_id: int):  # type: ignore[no-untyped-def]
    message = _visible(message_id)
    _apply_decision(message, current_user)
    return redirect(url_for("messages.detail", message_id=message.id))


def _apply_decision(message: Message, actor, via: str = "") -> None:  # type: ignore[no-untyped-def]
    action = request.form.get("action")
    try:
        if action == "approve":
            moderation.approve(_settings(), message, actor, via=via)
            flash(_("Message accepté : il part vers les membres de la liste."), "info")
        elif action == "reject":
            moderation.reject(_settings(), message, actor, request.form.get("reason", "").strip(), via=via)
            flash(_("Message refusé ; l’expéditeur en est informé."), "info")
        else:
            abort(400)
    except moderation.NotHeld:
        flash(_("Ce message a déjà été traité."), "error")


@moderation_bp.route("/moderation/<token>", methods=["GET", "POST"])
def by_link(token: str):  # type: ignore[no-untyped-def]
    try:
        link = moderation.moderation_link(_settings(), token)
    except tokens.ExpiredToken:
        return render_template("messages/link_error.html", expired=True), 410
    except tokens.BadToken:
        return render_template("messages/link_error.html", expired=False), 404
    message = link.message
    if request.method == "POST":
        actor = current_user if current_user.is_authenticated else None
        _apply_decision(message, actor, via=link.moderator)  # logged as the moderator the link was mailed to
        return redirect(url_for("moderation.by_link", token=token))
    return render_template("messages/moderate.html", message=message, preview=_preview(bytes(message.content)),
                           token=token, decision=request.args.get("decision"))


@bp.get("/captured")
@staff_required
def captured():  # type: ignore[no-untyped-def]
    folder = _settings().capture_dir
    page = _page()
    rows, more = queries.captured_page(_settings(), current_user, (page - 1) * PER_PAGE, PER_PAGE)
    return render_template("messages/captured.html", rows=rows, page=page, more=more,
                           smarthost=_settings().smarthost, folder=folder, mail_date=format_mail_date)


@bp.get("/captured/<key>")
@staff_required
def captured_message(key: str):  # type: ignore[no-untyped-def]
    message = mail.read_one_captured(_settings().capture_dir, key)
    if message is None or not queries.may_see_captured(_settings(), current_user, key, message):
        abort(404)
    return render_template("messages/captured_message.html", key=key, message=message, preview=_preview(message))


PREVIEWS_KEPT = 64  # previews of stored messages kept (parsing a mail again on every view of its page)
_previews: OrderedDict[tuple[bytes, str, str], dict[str, object]] = OrderedDict()


def _preview(source) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What a reader sees: the main headers, the text (or HTML) body, the attachments. A stored message's
    preview is kept per content (its digest), language and time zone."""
    if not isinstance(source, bytes):
        return _read(source)
    key = (hashlib.sha256(source).digest(), str(get_locale()), str(get_timezone()))
    found = _previews.get(key)
    if found is None:
        found = _previews[key] = _read(parse(source))
        while len(_previews) > PREVIEWS_KEPT:
            _previews.popitem(last=False)
    return found


def _read(message: EmailMessage) -> dict[str, object]:
    body = message.get_body(("plain", "html"))
    text, html = "", ""
    if body is not None:
        content = (part_text(body) or "").replace("\r\n", "\n")
        if body.get_content_type() == "text/html":
            html = content
        else:
            text = content
    attachments = [(part.get_filename() or part.get_content_type(), len(part.get_payload(decode=True) or b""))
                   for part in message.iter_attachments()]
    headers = [(str(label), format_mail_date(message.get(name)) if name == "Date" else str(message.get(name)))
               for name, label in HEADERS if message.get(name)]
    return {"headers": headers, "text": text, "html": html, "attachments": attachments,
            "states": MessageState}


from portal.messages import list_stats  # noqa: E402,F401  (one list's statistics register on this blueprint)
