"""One list's delivery statistics and bouncing addresses for staff: figures of its recent messages, the addresses
that fail, the list's bounce threshold, and re-enabling an address. Registered on the ``messages`` blueprint."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from engine.bounces import staff as bounce_staff
from engine.bounces import stats
from engine.posting.models import Message
from portal.access import client_ip, current_list, staff_required
from portal.admin.forms import ButtonForm
from portal.messages.views import PER_PAGE, _page, bp


@bp.get("/listes/<int:list_id>")
@staff_required
def list_stats(list_id: int) -> str:
    ml = current_list(list_id)
    page = _page()
    settings = current_app.extensions["palanquee.settings"]
    messages = list(Message.select().where(Message.mailing_list == ml.id)
                    .order_by(Message.received_at.desc(), Message.id.desc()).paginate(page, PER_PAGE))
    return render_template("messages/list_stats.html", ml=ml, totals=stats.list_figures([ml.id])[ml.id],
                           messages=messages, figures=stats.message_figures(messages), page=page, per_page=PER_PAGE,
                           addresses=bounce_staff.bouncing_addresses(settings, current_user, ml, limit=200),
                           default_threshold=settings.bounce_threshold, window_days=stats.LIST_WINDOW.days,
                           form=ButtonForm())


@bp.post("/listes/<int:list_id>/seuil")
@staff_required
def set_threshold(list_id: int) -> Response:
    ml = current_list(list_id)
    if ButtonForm().validate_on_submit():
        try:
            bounce_staff.set_threshold(current_user, ml, request.form.get("threshold", "")[:20], ip=client_ip())
            flash(_("Seuil enregistré."), "ok")
        except bounce_staff.BadThreshold:
            flash(_("Le seuil doit être un nombre entre 1 et 100, ou vide pour la valeur par défaut."), "error")
    return redirect(url_for("messages.list_stats", list_id=ml.id))


@bp.post("/listes/<int:list_id>/reactiver")
@staff_required
def reenable(list_id: int) -> Response:
    ml = current_list(list_id)
    address = request.form.get("address", "")[:254]
    if ButtonForm().validate_on_submit() and bounce_staff.reenable(current_user, ml, address, ip=client_ip()):
        flash(_("Les listes écrivent de nouveau à %(address)s.", address=address), "ok")
    return redirect(url_for("messages.list_stats", list_id=ml.id))
