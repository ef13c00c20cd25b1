"""Administration views: the lists page, creating and deleting lists, mail domains, member import, audit log.

Views validate a form, call one engine function, then render or redirect. The engine checks scope itself;
``NotAllowed`` raised anywhere in this blueprint answers 403. One list's own pages are in ``list_views``.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import NamedTuple

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from markupsafe import Markup
from werkzeug.exceptions import Forbidden
from wtforms import SelectChoice

from engine.bounces.stats import Figures, list_figures
from engine.directory import importer, labels, staff
from engine.directory.models import Member
from engine.lists import admin, administrators
from engine.lists import authority as list_authority
from engine.lists.admin import AdminError
from engine.lists.models import Domain, ListKind, MailingList
from portal.access import client_ip, staff_required
from portal.admin import criterion_entries, journal, picker, texts
from portal.admin.forms import AuditFilterForm, ButtonForm, CreateListForm, ImportForm

bp = Blueprint("admin", __name__, url_prefix="/admin")
PER_PAGE = 50
MAX_UPLOAD = 20 * 1024 * 1024  # bytes; the national file belongs to the command line


@bp.record_once
def _journal_in_templates(state) -> None:  # type: ignore[no-untyped-def]
    # templates kept as fragments (rendering.fragment) call these: the journal's rows, the structure picker
    state.app.jinja_env.globals["journal"] = journal
    state.app.jinja_env.globals["structure_options"] = picker.options_within
    state.app.jinja_env.globals["role_checks"] = picker.role_checks
    state.app.jinja_env.globals["criterion_entry"] = criterion_entries.entry_of
    state.app.jinja_env.globals["criterion_fields"] = criterion_entries.fields_of


@bp.errorhandler(staff.NotAllowed)
def _outside_scope(_error: staff.NotAllowed):  # type: ignore[no-untyped-def]
    # answered like abort(403), through the application's own 403 handling
    return current_app.handle_http_exception(Forbidden())


def _language() -> str:
    from flask_babel import get_locale

    return "en" if str(get_locale()).startswith("en") else "fr"


def page_number() -> int:
    value = request.args.get("page", "1")
    return max(int(value), 1) if value.isdigit() else 1


def member_by_licence(licence: str) -> Member | None:
    return Member.get_or_none(Member.licence_number == licence.strip().upper()) if licence.strip() else None


@bp.get("/")
@staff_required
def index():  # type: ignore[no-untyped-def]
    sort = request.args.get("sort", "address")
    descending = request.args.get("order") == "desc"
    search = request.args.get("q", "")[:100]
    rows, total = admin.lists_page(current_user, search=search, sort=sort, descending=descending,
                                   page=page_number(), per_page=PER_PAGE)
    figures = list_figures([row.mailing_list.id for row in rows])  # one aggregate query for the page
    lines = [ListLine.of(row, figures[row.mailing_list.id]) for row in rows]
    return render_template("admin/lists.html", lines=lines, total=total, sort=sort, descending=descending,
                           search=search, page=page_number(), per_page=PER_PAGE, form=ButtonForm())


class ListLine(NamedTuple):
    """What a row of the lists page shows, and nothing else: the row's HTML is kept per value (``fragment``)."""

    id: int
    address: str
    name: str
    kind: str
    enabled: bool
    recipients: int | None
    stale: bool
    counted_at: datetime | None
    sent: int
    sent_rate: float | None
    bounced: int
    bounced_rate: float | None
    unsubscribed: int
    unsubscribed_rate: float | None

    @classmethod
    def of(cls, row: admin.ListRow, f: Figures) -> ListLine:
        ml = row.mailing_list
        return cls(ml.id, ml.address, ml.name, ml.kind, ml.lists_enabled, row.recipients, row.stale,
                   row.counted_at, f.sent, f.sent_rate, f.bounced, f.bounced_rate, f.unsubscribed, f.unsubscribed_rate)


@bp.route("/lists/new", methods=["GET", "POST"])
@staff_required
def create_list():  # type: ignore[no-untyped-def]
    domains = admin.usable_domains(current_user)
    form = CreateListForm()
    form.domain.choices = [SelectChoice(d.id, texts.domain_choice(d)) for d in domains]
    if request.method == "GET":
        form.owner.data = current_user.licence_number
        default = administrators.default_domain(current_user, domains)
        form.domain.data = default.id if default else None
        scopes = staff.scopes(current_user)
        form.structure.data = picker.value_of(scopes[0]) if scopes else ""
    if form.validate_on_submit():
        created = _create(form)
        if created is not None:
            return _after_creation(created)
    return render_template("admin/list_new.html", form=form, structures=picker.choices())


def _create(form: CreateListForm) -> admin.Created | None:
    structure = picker.structure_from(form.structure)
    owner = member_by_licence(form.owner.data or "")
    if form.owner.data and owner is None:
        form.owner.errors.append(_("Numéro de licence inconnu."))
    if structure is None or (form.owner.data and owner is None):
        return None
    new = admin.NewList(domain_id=form.domain.data, local_part=form.local_part.data, name=form.name.data or "",
                        structure_id=structure.id, kind=form.kind.data, owner_id=owner.id if owner else None,
                        subscribers=form.subscribers.data or "", notify=form.notify.data)
    try:
        created = admin.create_list(g_settings(), current_user, new, ip=client_ip())
    except AdminError as error:
        if error.code in ("bad_local_part", "address_taken", "address_deleted", "address_too_long"):
            form.local_part.errors.append(texts.admin_error(error))
        else:
            flash(texts.admin_error(error), "error")
        return None
    _flash_created(created, form.notify.data)
    return created


def _flash_created(created: admin.Created, notify: bool) -> None:
    ml = created.mailing_list
    flash(_("La liste %(address)s est créée.", address=ml.address), "ok")
    if not ml.domain.lists_enabled:
        flash(_("Le service de listes du domaine %(domain)s est désactivé : la liste refuse le courrier tant qu’il "
                "n’est pas activé (Paramètres de la messagerie).", domain=ml.domain.name), "error")
    flash_subscriber_change(created.subscribers)
    if notify and created.notified:
        flash(_("Prévenu(s) de la création : %(who)s.", who=texts.administrators(created.notified)), "ok")
    elif notify:
        flash(_("Personne n’a été prévenu : PALANQUEE_ADMIN_EMAIL n’est pas réglé, et aucune structure au-dessus de "
                "celle de la liste n’a d’administrateur avec une adresse, hormis vous."), "error")


def _after_creation(created: admin.Created):  # type: ignore[no-untyped-def]
    """Bad lines stay in the field (on the new list's subscribers page); a role-based list goes to its criteria."""
    ml = created.mailing_list
    if created.subscribers.bad:
        from portal.admin.list_views import subscribers_page_keeping

        return subscribers_page_keeping(ml, created.subscribers)
    if ml.kind == ListKind.ROLE:
        return redirect(url_for("admin.list_criteria", list_id=ml.id))
    return redirect(url_for("admin.list_subscribers", list_id=ml.id))


def flash_subscriber_change(change) -> None:  # type: ignore[no-untyped-def]
    flash(_("Abonnés : %(added)s ajouté(s), %(removed)s retiré(s), %(duplicates)s doublon(s) fusionné(s).",
            added=change.added, removed=change.removed, duplicates=change.duplicates), "ok")
    if change.bad:
        flash(ngettext("%(num)s ligne refusée : elle reste en tête du champ, à corriger.",
                       "%(num)s lignes refusées : elles restent en tête du champ, à corriger.", len(change.bad)),
              "error")
    if change.opted_out:
        flash(_("Ces adresses se sont désabonnées et restent hors de la liste : %(addresses)s",
                addresses=", ".join(change.opted_out[:20])), "error")


def g_settings():  # type: ignore[no-untyped-def]
    from flask import g

    return g.settings


@bp.post("/lists/delete")
@staff_required
def delete_lists():  # type: ignore[no-untyped-def]
    form = ButtonForm()
    if not form.validate_on_submit():
        abort(400)
    ids = [int(v) for v in request.form.getlist("list_ids") if v.isdigit()]
    if not ids:
        flash(_("Cochez au moins une liste."), "error")
        return redirect(url_for("admin.index"))
    if request.form.get("confirm") != "yes":
        lists = [admin.get_list(current_user, list_id) for list_id in ids]
        return render_template("admin/delete_confirm.html", lists=lists, form=form)
    deleted = admin.delete_lists(current_user, ids, ip=client_ip())
    flash(_("Listes supprimées : %(addresses)s", addresses=", ".join(ml.address for ml in deleted)), "ok")
    return redirect(url_for("admin.index"))


@bp.get("/domains")
@staff_required
def domains():  # type: ignore[no-untyped-def]
    rows = [(d, staff.can_manage(current_user, d.structure),
             MailingList.select().where((MailingList.domain == d) & MailingList.deleted_at.is_null()).count())
            for d in admin.usable_domains(current_user)]
    return render_template("admin/domains.html", rows=rows, form=ButtonForm())


@bp.post("/domains/<int:domain_id>")
@staff_required
def switch_domain(domain_id: int):  # type: ignore[no-untyped-def]
    """Switching on is one click; switching off first shows what it stops (lists and recipients), as deletion does."""
    form = ButtonForm()
    if not form.validate_on_submit():
        abort(400)
    domain = Domain.get_or_none(Domain.id == domain_id) or abort(404)
    enabled = request.form.get("enabled") == "1"
    if not enabled and domain.lists_enabled and request.form.get("confirm") != "yes":
        staff.require_manage(current_user, domain.structure)
        return render_template("admin/domain_confirm.html", domain=domain,
                               impact=administrators.domain_impact(domain))
    admin.set_domain_enabled(current_user, domain, enabled, ip=client_ip())
    if enabled:
        flash(_("Listes de diffusion activées pour %(domain)s.", domain=domain.name), "ok")
    else:
        flash(_("Listes de diffusion désactivées pour %(domain)s : ses listes refusent le courrier.",
                domain=domain.name), "ok")
    return redirect(url_for("admin.domains"))


@bp.route("/import", methods=["GET", "POST"])
@staff_required
def import_members():  # type: ignore[no-untyped-def]
    form = ImportForm()
    report = None
    if form.validate_on_submit():
        data = form.file.data.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            flash(_("Fichier trop gros pour la page (plus de 20 Mo) : utilisez la commande palanquee "
                    "import-members."), "error")
            return render_template("admin/import.html", form=form, report=None, describe=texts.import_row)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252")  # spreadsheets on Windows save in this encoding
        try:
            report = importer.import_members(g_settings(), io.StringIO(text, newline=None), actor=current_user,
                                             rights_beyond=list_authority.rights_beyond,
                                             overwrite_emails=form.overwrite.data, ip=client_ip(),
                                             source=form.file.data.filename or "")
        except importer.ImportFileError as exc:
            flash(_("Fichier illisible : %(reason)s", reason=str(exc)), "error")
    return render_template("admin/import.html", form=form, report=report, describe=texts.import_row)


@bp.get("/audit")
@staff_required
def audit_log():  # type: ignore[no-untyped-def]
    form = AuditFilterForm(request.args)
    form.action.choices = journal.action_choices(_language())
    filters = staff.AuditFilter()
    if form.validate():
        object_id = form.object_id.data or ""
        filters = staff.AuditFilter(action=form.action.data or "", object_type=form.object_type.data or "",
                                    object_id=int(object_id) if object_id.isdigit() else None,
                                    actor=(form.actor.data or "").strip(), since=form.since.data,
                                    until=form.until.data)
    before = _audit_position(request.args.get("before", ""))
    events, following = staff.audit_page(current_user, filters, before=before, size=PER_PAGE)
    older = f"{following[0].isoformat()}~{following[1]}" if following else None
    return render_template("admin/audit.html", filters=_filters_html(form), events=events, older=older,
                           first=before is not None, language=_language(), names=labels.current_version())


FILTERS_KEPT = 256
_filters: dict[tuple[object, ...], str] = {}


def _filters_html(form: AuditFilterForm) -> Markup:
    """The journal's filter form: its HTML depends only on the query string (values typed, their errors) and
    the language, so it is rendered once per pair and kept."""
    key = (tuple(sorted(request.args.items(multi=True))), _language(), request.script_root)
    found = _filters.get(key)
    if found is None:
        found = render_template("admin/_audit_filters.html", form=form)
        if len(_filters) >= FILTERS_KEPT:
            _filters.clear()
        _filters[key] = found
    return Markup(found)


def _audit_position(text: str) -> tuple[datetime, int] | None:
    """The ``before`` of the journal's "older" link: an event's time and id (anything else: the first page)."""
    moment, _, event_id = text[:64].partition("~")
    try:
        return (datetime.fromisoformat(moment), int(event_id)) if event_id.isdigit() else None
    except ValueError:
        return None


# One list's pages and the throttling rules register on this blueprint.
from portal.admin import list_views, throttle_views  # noqa: E402,F401
