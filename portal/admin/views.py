"""Administration views: the lists page, creating and deleting lists, mail domains, member import, audit log.

Views validate a form, call one engine function, then render or redirect. The engine checks scope itself;
``NotAllowed`` raised anywhere in this blueprint answers 403. One list's own pages are in ``list_views``.
"""

from __future__ import annotations

import io

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import Forbidden
from wtforms import SelectChoice

from engine.bounces.stats import list_figures
from engine.directory import importer, staff
from engine.directory.models import Member, Structure
from engine.lists import admin
from engine.lists.admin import AdminError
from engine.lists.models import Domain, MailingList
from portal.access import client_ip, staff_required
from portal.admin import texts
from portal.admin.forms import AuditFilterForm, ButtonForm, CreateListForm, ImportForm

bp = Blueprint("admin", __name__, url_prefix="/admin")
PER_PAGE = 50
MAX_UPLOAD = 20 * 1024 * 1024  # bytes; the national file belongs to the command line


@bp.errorhandler(staff.NotAllowed)
def _outside_scope(_error: staff.NotAllowed):  # type: ignore[no-untyped-def]
    # answered like abort(403), through the application's own 403 handling
    return current_app.handle_http_exception(Forbidden())


def page_number() -> int:
    value = request.args.get("page", "1")
    return max(int(value), 1) if value.isdigit() else 1


def structure_by_code(code: str) -> Structure | None:
    return Structure.get_or_none(Structure.code == code.strip().upper()) if code else None


def member_by_licence(licence: str) -> Member | None:
    return Member.get_or_none(Member.licence_number == licence.strip().upper()) if licence.strip() else None


def manageable_structures() -> list[Structure]:
    return list(staff.manageable_structures(current_user).order_by(Structure.path))


@bp.get("/")
@staff_required
def index():  # type: ignore[no-untyped-def]
    sort = request.args.get("sort", "address")
    descending = request.args.get("order") == "desc"
    search = request.args.get("q", "")[:100]
    rows, total = admin.lists_page(current_user, search=search, sort=sort, descending=descending,
                                   page=page_number(), per_page=PER_PAGE)
    figures = list_figures([row.mailing_list.id for row in rows])  # one aggregate query for the page
    return render_template("admin/lists.html", rows=rows, total=total, sort=sort, descending=descending,
                           search=search, page=page_number(), per_page=PER_PAGE, form=ButtonForm(), figures=figures)


@bp.route("/lists/new", methods=["GET", "POST"])
@staff_required
def create_list():  # type: ignore[no-untyped-def]
    domains = admin.usable_domains(current_user)
    form = CreateListForm()
    form.domain.choices = [SelectChoice(d.id, d.name) for d in domains]
    if request.method == "GET":
        form.owner.data = current_user.licence_number
        scopes = staff.scopes(current_user)
        form.structure.data = scopes[0].code if scopes else ""
    if form.validate_on_submit():
        created = _create(form)
        if created is not None:
            return redirect(url_for("admin.list_subscribers", list_id=created.mailing_list.id))
    return render_template("admin/list_new.html", form=form, structures=manageable_structures())


def _create(form: CreateListForm) -> admin.Created | None:
    structure = structure_by_code(form.structure.data)
    owner = member_by_licence(form.owner.data or "")
    if structure is None:
        form.structure.errors.append(_("Structure inconnue : %(value)s", value=form.structure.data))
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
        flash(texts.admin_error(error), "error")
        return None
    flash(_("La liste %(address)s est créée.", address=created.mailing_list.address), "ok")
    flash_subscriber_change(created.subscribers)
    if form.notify.data:
        if created.notified:
            flash(_("L'administrateur (%(to)s) a été prévenu.", to=created.notified), "ok")
        else:
            flash(_("Personne n'a été prévenu : la liste n'a pas de propriétaire avec une adresse et "
                    "PALANQUEE_ADMIN_EMAIL n'est pas réglé."), "error")
    return created


def flash_subscriber_change(change) -> None:  # type: ignore[no-untyped-def]
    flash(_("Abonnés : %(added)s ajouté(s), %(removed)s retiré(s), %(duplicates)s doublon(s) fusionné(s).",
            added=change.added, removed=change.removed, duplicates=change.duplicates), "ok")
    for line in change.bad:
        flash(texts.bad_line(line), "error")
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
    form = ButtonForm()
    if not form.validate_on_submit():
        abort(400)
    domain = Domain.get_or_none(Domain.id == domain_id) or abort(404)
    enabled = request.form.get("enabled") == "1"
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
                                             overwrite_emails=form.overwrite.data, ip=client_ip(),
                                             source=form.file.data.filename or "")
        except importer.ImportFileError as exc:
            flash(_("Fichier illisible : %(reason)s", reason=str(exc)), "error")
    return render_template("admin/import.html", form=form, report=report, describe=texts.import_row)


@bp.get("/audit")
@staff_required
def audit_log():  # type: ignore[no-untyped-def]
    form = AuditFilterForm(request.args)
    filters = staff.AuditFilter()
    if form.validate():
        object_id = form.object_id.data or ""
        filters = staff.AuditFilter(action=form.action.data or "", object_type=form.object_type.data or "",
                                    object_id=int(object_id) if object_id.isdigit() else None,
                                    actor=(form.actor.data or "").strip(), since=form.since.data,
                                    until=form.until.data)
    query = staff.audit_events(current_user, filters)
    events = list(query.paginate(page_number(), PER_PAGE))
    return render_template("admin/audit.html", form=form, events=events, page=page_number(), per_page=PER_PAGE,
                           has_more=len(events) == PER_PAGE)


from portal.admin import list_views  # noqa: E402,F401  (one list's pages register on this blueprint)
