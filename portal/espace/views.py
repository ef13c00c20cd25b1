"""Mon espace: the member's profile, the pencil (address change and its confirmation), and Mes listes.

Every view acts for the logged-in member only (no member id is ever read from a URL or a form); the
public confirmation and cancel pages act for the member their signed token names.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from engine.bounces import member as bounces
from engine.directory import email_change
from engine.directory.models import EmailChange
from engine.directory.profile import profile
from engine.lists import optouts
from engine.lists.member_lists import lists_of_member
from portal import current_is_staff
from portal.espace.forms import ButtonForm, EmailForm
from portal.espace.page import Page, render_page
from portal.formatting import format_duration

bp = Blueprint("espace", __name__, url_prefix="/espace")

SOURCES = {
    "footer": _l("lien de désabonnement d’un message"),
    "one-click": _l("bouton « se désabonner » de votre messagerie"),
    "mailto": _l("message de désabonnement"),
    "espace": _l("depuis Mon espace"),
    "staff": _l("par l’administrateur"),
    "bounce": _l("adresse en erreur"),
}
DONE = "espace.done"  # the confirmation of the last leave or rejoin, shown in that list's row
LINK_STATUS = {"invalid": 404, "expired": 410, "used": 409, "cancelled": 409, "applied": 409, "other_member": 403}


@bp.app_template_global()
def source_label(source: str) -> str:
    return str(SOURCES.get(source, source))


def _me():  # type: ignore[no-untyped-def]
    return current_user if current_user.is_authenticated else None


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    me = current_user._get_current_object()  # the member itself: each access through the proxy costs a look-up
    done = session.pop(DONE) if DONE in session else None  # pop() alone would rewrite the cookie every time
    shown = Page.of(profile(g.settings, me), lists_of_member(me), bounces.address_status(me))
    return render_page(shown, done, current_is_staff())


@bp.route("/adresse", methods=["GET", "POST"])
@login_required
def email():  # type: ignore[no-untyped-def]
    form = EmailForm()
    status = 200
    if form.validate_on_submit():
        try:
            change = email_change.request_change(g.settings, current_user, form.email.data,
                                                 ip=request.remote_addr, language=str(get_locale()))
        except email_change.InvalidAddress:
            form.email.errors.append(_("Cette adresse n’est pas valide."))
        except email_change.SameAddress:
            form.email.errors.append(_("C’est déjà l’adresse utilisée par les listes."))
        except email_change.TooManyRequests:
            form.email.errors.append(_("Trop de demandes de changement d’adresse aujourd’hui : réessayez demain."))
            status = 429
        else:
            flash(_("Un lien de confirmation vient d’être envoyé à %(address)s. Ouvrez-le pour confirmer "
                    "la nouvelle adresse.", address=change.new_email), "info")
            return redirect(url_for("espace.index"))
    return render_template("espace/email.html", form=form, profile=profile(g.settings, current_user),
                           delay_words=format_duration), status


@bp.post("/adresse/annulation")
@login_required
def cancel_pending():  # type: ignore[no-untyped-def]
    if ButtonForm().validate_on_submit() and email_change.cancel_pending(g.settings, current_user,
                                                                          ip=request.remote_addr):
        flash(_("Le changement d’adresse est annulé."), "info")
    return redirect(url_for("espace.index"))


def _link_error(exc: email_change.ChangeLinkError):  # type: ignore[no-untyped-def]
    return render_template("espace/link_error.html", reason=exc.reason), LINK_STATUS[exc.reason]


def _link_with_a_button(token: str, check: Callable[..., EmailChange], act: Callable[..., EmailChange],
                        page: str) -> tuple[EmailChange | None, ResponseReturnValue | None]:
    """A link mailed for an address change: GET shows ``page`` with a button and changes nothing (mail
    scanners follow links); the button's POST (with its CSRF token) does ``act``. Returns the change
    acted on, or else the response to send (the page, or why the link cannot serve)."""
    form = ButtonForm()
    try:
        change = check(g.settings, token, _me())
        if not form.validate_on_submit():
            return None, render_template(page, change=change, form=form)
        return act(g.settings, token, member=_me(), ip=request.remote_addr), None
    except email_change.ChangeLinkError as exc:
        return None, _link_error(exc)


@bp.route("/adresse/confirmer/<token>", methods=["GET", "POST"])
def confirm(token: str):  # type: ignore[no-untyped-def]
    """The new address's link: the button confirms it."""
    change, response = _link_with_a_button(token, email_change.change_to_confirm, email_change.confirm,
                                           "espace/confirm.html")
    if response is not None:
        return response
    if current_user.is_authenticated:
        flash(_("Nouvelle adresse confirmée."), "info")
        return redirect(url_for("espace.index"))
    return render_template("espace/confirmed.html", change=change)


@bp.route("/adresse/annuler/<token>", methods=["GET", "POST"])
def cancel(token: str):  # type: ignore[no-untyped-def]
    """The old address's "this was not me" link: the button cancels the change."""
    change, response = _link_with_a_button(token, email_change.change_to_cancel, email_change.cancel_with_token,
                                           "espace/cancel.html")
    return response if response is not None else render_template("espace/cancelled.html", change=change)


@bp.post("/listes/<int:list_id>/quitter")
@login_required
def leave(list_id: int):  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        mailing_list = optouts.leave_from_espace(current_user, list_id, ip=request.remote_addr)
    except optouts.NotOnList:
        abort(404)
    return _done_with(mailing_list.id, _("Vous avez quitté la liste « %(name)s ».", name=mailing_list.name))


@bp.post("/listes/<int:list_id>/rejoindre")
@login_required
def rejoin(list_id: int):  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        mailing_list = optouts.rejoin_from_espace(current_user, list_id, ip=request.remote_addr)
    except optouts.NotOnList:
        abort(404)
    return _done_with(mailing_list.id, _("Vous avez rejoint la liste « %(name)s ».", name=mailing_list.name))


def _done_with(list_id: int, text: str):  # type: ignore[no-untyped-def]
    """Back to Mon espace at the list's row, where the confirmation is shown (and focused, so it is read out)."""
    session[DONE] = {"list": list_id, "text": text}
    return redirect(url_for("espace.index", _anchor=f"liste-{list_id}"))


from portal.espace import bounce_views  # noqa: E402,F401  (an address that bounces: routes on this blueprint)
