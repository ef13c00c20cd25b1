"""One list's administration pages: settings, subscribers, criteria with live preview, posting rules, opt-outs,
recipients. Registered on the ``admin`` blueprint."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_login import current_user
from wtforms import SelectChoice

from engine.directory.models import Role, Structure
from engine.lists import admin, preview, subscribers
from engine.lists.admin import AdminError
from engine.lists.models import MailingList
from engine.lists.resolve import count_recipients
from portal.access import client_ip, current_list, staff_required
from portal.admin import texts
from portal.admin.forms import BulkSubscribersForm, CriteriaForm, PostingForm, SettingsForm, SubscribersForm
from portal.admin.views import (
    bp,
    flash_subscriber_change,
    manageable_structures,
    member_by_licence,
    page_number,
    structure_by_code,
)

PAGE = 100


@bp.route("/lists/<int:list_id>", methods=["GET", "POST"])
@staff_required
def list_settings(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    form = SettingsForm(obj=ml)
    if request.method == "GET":
        form.owner.data = ml.owner.licence_number if ml.owner_id else ""
    if form.validate_on_submit():
        owner = member_by_licence(form.owner.data or "")
        if form.owner.data and owner is None:
            form.owner.errors.append(_("Numéro de licence inconnu."))
        else:
            try:
                admin.update_settings(current_user, ml, name=form.name.data, description=form.description.data or "",
                                      subject_prefix=form.subject_prefix.data or "", reply_to=form.reply_to.data,
                                      owner_id=owner.id if owner else None, ip=client_ip(),
                                      delivery={"dmarc_mode": form.dmarc_mode.data,
                                                "dmarc_author_in": form.dmarc_author_in.data,
                                                "sender_check": form.sender_check.data,
                                                "arc_seal": bool(form.arc_seal.data)})
                flash(_("Réglages enregistrés."), "ok")
                return redirect(url_for("admin.list_settings", list_id=ml.id))
            except AdminError as error:
                flash(texts.admin_error(error), "error")
    return render_template("admin/list_settings.html", ml=ml, form=form, tab="settings")


@bp.route("/lists/<int:list_id>/subscribers", methods=["GET", "POST"])
@staff_required
def list_subscribers(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    count = subscribers.subscriber_count(ml)
    large = count > subscribers.TEXTAREA_LIMIT
    form = BulkSubscribersForm() if large else SubscribersForm()
    if form.validate_on_submit():
        if large:
            act = subscribers.add_subscribers if form.action.data == "add" else subscribers.remove_subscribers
            change = act(current_user, ml, form.lines.data, ip=client_ip())
        else:
            change = subscribers.replace_subscribers(current_user, ml, form.subscribers.data or "", ip=client_ip())
        flash_subscriber_change(change)
        if not change.bad:
            return redirect(url_for("admin.list_subscribers", list_id=ml.id))
        # show the saved addresses followed by the bad lines, so that they can be corrected
        if large:
            form.lines.data = "\n".join(b.content for b in change.bad)
        else:
            form.subscribers.data = "\n".join([subscribers.subscribers_text(ml), *[b.content for b in change.bad]])
        count = subscribers.subscriber_count(ml)
    elif request.method == "GET" and not large:
        form.subscribers.data = subscribers.subscribers_text(ml)
    search = request.args.get("q", "")[:100]
    rows, total = subscribers.subscribers_page(ml, page=page_number(), per_page=PAGE, search=search)
    return render_template("admin/list_subscribers.html", ml=ml, form=form, large=large, count=count, rows=rows,
                           total=total, page=page_number(), per_page=PAGE, search=search, tab="subscribers",
                           limit=subscribers.TEXTAREA_LIMIT)


def _role_choices() -> list[SelectChoice]:
    language = "en" if _current_locale().startswith("en") else "fr"
    return [SelectChoice(r.id, r.name(language)) for r in Role.select().order_by(Role.rank, Role.code)]


def _current_locale() -> str:
    from flask_babel import get_locale

    return str(get_locale())


def _criteria_form(ml: MailingList) -> CriteriaForm:
    form = CriteriaForm()
    if request.method == "GET":
        specs = preview.current_specs(ml)
        codes = dict(Structure.select(Structure.id, Structure.code).tuples().iterator())
        form = CriteriaForm(data={"criteria": [
            dict(structure=codes.get(s.structure_id, ""), roles=list(s.role_ids), include_subtree=s.include_subtree,
                 structure_kind=s.structure_kind or "", require_valid_licence=s.require_valid_licence)
            for s in specs] + [dict(require_valid_licence=True)]})
    choices = _role_choices()
    for entry in form.criteria:
        entry.form.roles.choices = choices
    return form


def _specs(form: CriteriaForm) -> list[preview.CriterionSpec] | None:
    """The criteria typed, or None after marking the unknown structure codes as errors."""
    specs, ok = [], True
    for entry in form.criteria:
        sub = entry.form
        if sub.remove.data or not (sub.structure.data or "").strip():
            continue
        structure = structure_by_code(sub.structure.data)
        if structure is None:
            sub.structure.errors = [_("Structure inconnue : %(value)s", value=sub.structure.data)]
            ok = False
            continue
        specs.append(preview.CriterionSpec(structure.id, tuple(sub.roles.data or ()), bool(sub.include_subtree.data),
                                           sub.structure_kind.data or None, bool(sub.require_valid_licence.data)))
    return specs if ok else None


@bp.route("/lists/<int:list_id>/criteria", methods=["GET", "POST"])
@staff_required
def list_criteria(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    form = _criteria_form(ml)
    shown = None
    if form.validate_on_submit():
        specs = _specs(form)
        if specs is not None and request.form.get("action") == "preview":
            shown = preview.preview(current_user, ml, specs)
        elif specs is not None:
            if preview.replace_criteria(current_user, ml, specs, ip=client_ip()):
                flash(_("Critères enregistrés."), "ok")
            return redirect(url_for("admin.list_criteria", list_id=ml.id))
    if shown is None and request.method == "GET":
        shown = preview.preview(current_user, ml)
    return render_template("admin/list_criteria.html", ml=ml, form=form, shown=shown, tab="criteria",
                           structures=manageable_structures())


@bp.post("/lists/<int:list_id>/criteria/preview")
@staff_required
def criteria_preview(list_id: int):  # type: ignore[no-untyped-def]
    """The preview fragment the page's script asks for as the criteria change (same form, same CSRF token)."""
    ml = current_list(list_id)
    form = _criteria_form(ml)
    if not form.validate_on_submit():
        abort(400)
    specs = _specs(form)
    if specs is None:
        return render_template("admin/_criteria_errors.html", form=form), 422
    return render_template("admin/_preview.html", ml=ml, shown=preview.preview(current_user, ml, specs))


@bp.route("/lists/<int:list_id>/posting", methods=["GET", "POST"])
@staff_required
def list_posting(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    form = PostingForm()
    form.roles.choices = _role_choices()
    if request.method == "GET":
        rules = admin.posting_rules(ml)
        structure = Structure.get_or_none(Structure.id == rules.role_structure_id) if rules.role_structure_id else None
        form.policy.data, form.hold.data = rules.policy, "hold" if rules.hold_unauthorised else "refuse"
        form.roles.data, form.addresses.data, form.moderators.data = list(rules.role_ids), rules.addresses, \
            rules.moderators
        form.role_structure.data = structure.code if structure else ml.structure.code
    if form.validate_on_submit():
        structure = structure_by_code(form.role_structure.data or "") or ml.structure
        rules = admin.PostingRules(form.policy.data, form.hold.data == "hold", tuple(form.roles.data or ()),
                                   structure.id, form.addresses.data or "", form.moderators.data or "")
        try:
            admin.set_posting_rules(current_user, ml, rules, ip=client_ip())
            flash(_("Règles d'envoi enregistrées."), "ok")
            return redirect(url_for("admin.list_posting", list_id=ml.id))
        except AdminError as error:
            flash(texts.admin_error(error), "error")
    return render_template("admin/list_posting.html", ml=ml, form=form, tab="posting")


@bp.get("/lists/<int:list_id>/optouts")
@staff_required
def list_optouts(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    source, search = request.args.get("source", "")[:16], request.args.get("q", "")[:100]
    query = subscribers.opt_outs(ml, source=source, search=search)
    rows = list(query.paginate(page_number(), PAGE))
    return render_template("admin/list_optouts.html", ml=ml, rows=rows, total=query.count(), source=source,
                           search=search, sources=subscribers.opt_out_sources(ml), page=page_number(),
                           per_page=PAGE, tab="optouts")


@bp.get("/lists/<int:list_id>/optouts.csv")
@staff_required
def list_optouts_csv(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    source, search = request.args.get("source", "")[:16], request.args.get("q", "")[:100]
    body = stream_with_context(subscribers.opt_outs_csv(ml, source=source, search=search))
    name = f"desabonnements-{ml.local_part}.csv"
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/lists/<int:list_id>/recipients")
@staff_required
def list_recipients(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    rows = preview.recipients_page(current_user, ml, page=page_number(), per_page=PAGE)
    return render_template("admin/list_recipients.html", ml=ml, rows=rows, total=count_recipients(ml),
                           page=page_number(), per_page=PAGE, tab="recipients")
