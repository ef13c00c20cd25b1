"""One list's administration pages: settings, subscribers, criteria with live preview, posting rules, opt-outs,
recipients. Registered on the ``admin`` blueprint."""

from __future__ import annotations

import dataclasses

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from wtforms import SelectChoice

from engine.directory.models import Role, Structure
from engine.lists import admin, compiled, preview, recipients, subscribers, welcome
from engine.lists.admin import AdminError
from engine.lists.models import MailingList
from engine.prepared import Prepared
from portal.access import client_ip, current_list, staff_required
from portal.admin import journal, picker, texts
from portal.admin.forms import BulkSubscribersForm, CriteriaForm, PostingForm, SettingsForm, SubscribersForm
from portal.admin.views import bp, flash_subscriber_change, g_settings, member_by_licence, page_number

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
    large = subscribers.subscriber_count(ml) > subscribers.TEXTAREA_LIMIT
    form = BulkSubscribersForm() if large else SubscribersForm()
    if form.validate_on_submit():
        if large:
            act = subscribers.add_subscribers if form.action.data == "add" else subscribers.remove_subscribers
            change = act(current_user, ml, form.lines.data, ip=client_ip())
        else:
            change = subscribers.replace_subscribers(current_user, ml, form.subscribers.data or "", ip=client_ip())
        welcome.welcome_new(g_settings(), current_user, ml, change.new, change.opted_out, ip=client_ip())
        flash_subscriber_change(change)
        if not change.bad:
            return redirect(url_for("admin.list_subscribers", list_id=ml.id))
        return subscribers_page_keeping(ml, change)
    if request.method == "GET" and not large:
        form.subscribers.data = subscribers.subscribers_text(ml)
    return _subscribers_page(ml, form, large)


def subscribers_page_keeping(ml: MailingList, change: subscribers.SubscriberChange):  # type: ignore[no-untyped-def]
    """The subscribers page after a save with bad lines (also right after a list's creation): the refused lines
    first in the field, marked, then what was saved; each error names its line as it is shown now."""
    large = subscribers.subscriber_count(ml) > subscribers.TEXTAREA_LIMIT
    form = BulkSubscribersForm(formdata=None) if large else SubscribersForm(formdata=None)
    field = form.lines if large else form.subscribers
    saved = "" if large else subscribers.subscribers_text(ml)
    field.data = "\n".join([*(b.content for b in change.bad), *([saved] if saved else [])])
    field.errors = [texts.bad_line(dataclasses.replace(b, number=i)) for i, b in enumerate(change.bad, start=1)]
    return _subscribers_page(ml, form, large)


def _subscribers_page(ml: MailingList, form: SubscribersForm | BulkSubscribersForm, large: bool):  # type: ignore[no-untyped-def]
    search = request.args.get("q", "")[:100]
    rows, total = subscribers.subscribers_page(ml, page=page_number(), per_page=PAGE, search=search)
    return render_template("admin/list_subscribers.html", ml=ml, form=form, large=large,
                           count=subscribers.subscriber_count(ml), rows=rows, total=total, page=page_number(),
                           per_page=PAGE, search=search, tab="subscribers", limit=subscribers.TEXTAREA_LIMIT)


_ROLES: Prepared[Role] = Prepared(lambda: Role.select().order_by(Role.rank, Role.code))


def _roles() -> list[Role]:
    return _ROLES.all()


def _role_choices(roles: list[Role]) -> list[SelectChoice]:
    language = _language()
    return [SelectChoice(r.id, r.name(language)) for r in roles]


def role_groups(roles: list[Role]) -> tuple[tuple[str, tuple[tuple[int, str], ...]], ...]:
    """The role picker's checkboxes, grouped by kind of role (board, commissions, instructors, others): titles
    and names as shown, a value the picker's kept fragment is keyed on (``role_checks``)."""
    language = _language()
    groups: dict[str, list[tuple[int, str]]] = {}
    for role in roles:
        groups.setdefault(role.category if role.category in texts.ROLE_GROUPS else "", []).append(
            (role.id, role.name(language)))
    order = [*texts.ROLE_GROUPS, ""]
    return tuple((texts.role_group(kind), tuple(groups[kind])) for kind in order if kind in groups)


def _language() -> str:
    from flask_babel import get_locale

    return "en" if str(get_locale()).startswith("en") else "fr"


def _criteria_form(ml: MailingList, roles: list[Role]) -> CriteriaForm:
    if request.method != "GET":
        form = CriteriaForm()
    else:  # built once, from the list's criteria (each with its structure: two compiled statements)
        criteria, roles_of = compiled.load(ml)
        form = CriteriaForm(data={"criteria": [
            dict(structure=picker.value_of(c.structure), roles=sorted(roles_of.get(c.id, [])),
                 include_subtree=c.include_subtree, structure_kind=c.structure_kind or "",
                 require_valid_licence=c.require_valid_licence)
            for c in criteria] + [dict(require_valid_licence=True)]})
    choices = _role_choices(roles)
    for entry in form.criteria:
        entry.form.roles.choices = choices
    return form


def _specs(form: CriteriaForm) -> list[preview.CriterionSpec] | None:
    """The criteria typed, or None after marking unknown and out-of-scope structures as field errors."""
    specs, ok = [], True
    for entry in form.criteria:
        sub = entry.form
        if sub.remove.data or not (sub.structure.data or "").strip():
            continue
        structure = picker.structure_from(sub.structure)
        if structure is None:
            ok = False
            continue
        specs.append(preview.CriterionSpec(structure.id, tuple(sub.roles.data or ()), bool(sub.include_subtree.data),
                                           sub.structure_kind.data or None, bool(sub.require_valid_licence.data)))
    return specs if ok else None


@bp.route("/lists/<int:list_id>/criteria", methods=["GET", "POST"])
@staff_required
def list_criteria(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    roles = _roles()
    form = _criteria_form(ml, roles)
    shown = None
    if form.validate_on_submit():
        specs = _specs(form)
        if specs is not None and request.form.get("action") == "preview":
            shown = preview.preview(current_user, ml, specs)
        elif specs is not None:
            if preview.replace_criteria(current_user, ml, specs, ip=client_ip()):
                flash(_("Critères enregistrés."), "ok")
            return redirect(url_for("admin.list_criteria", list_id=ml.id))
    if shown is None and request.method == "GET":  # the sample and the stored count; the page's script asks
        shown = preview.preview(current_user, ml, exact=False)  # for the exact figures (criteria_exact)
    return render_template("admin/list_criteria.html", ml=ml, form=form, shown=shown, tab="criteria",
                           structures=picker.choices(), role_groups=role_groups(roles))


@bp.post("/lists/<int:list_id>/criteria/preview")
@staff_required
def criteria_preview(list_id: int):  # type: ignore[no-untyped-def]
    """The preview fragment the page's script asks for as the criteria change (same form, same CSRF token)."""
    ml = current_list(list_id)
    form = _criteria_form(ml, _roles())
    if not form.validate_on_submit():
        abort(400)
    specs = _specs(form)
    if specs is None:
        return render_template("admin/_criteria_errors.html", form=form), 422
    return render_template("admin/_preview.html", ml=ml, shown=preview.preview(current_user, ml, specs, exact=False))


@bp.post("/lists/<int:list_id>/criteria/exact")
@staff_required
def criteria_exact(list_id: int):  # type: ignore[no-untyped-def]
    """The preview with its exact count and difference (the database counts), asked for by the page's script
    once the cheap preview is shown: the same form, the same CSRF token."""
    ml = current_list(list_id)
    form = _criteria_form(ml, _roles())
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
    roles = _roles()
    form = PostingForm()
    form.roles.choices = _role_choices(roles)
    if request.method == "GET":
        rules = admin.posting_rules(ml)
        structure = Structure.get_or_none(Structure.id == rules.role_structure_id) if rules.role_structure_id else None
        form.policy.data, form.hold.data = rules.policy, "hold" if rules.hold_unauthorised else "refuse"
        form.roles.data, form.addresses.data, form.moderators.data = list(rules.role_ids), rules.addresses, \
            rules.moderators
        form.role_structure.data = picker.value_of(structure or ml.structure)
    if form.validate_on_submit():
        typed = (form.role_structure.data or "").strip()
        structure = picker.structure_from(form.role_structure) if typed else ml.structure
        if structure is not None and _save_posting(ml, form, structure):
            return redirect(url_for("admin.list_posting", list_id=ml.id))
    return render_template("admin/list_posting.html", ml=ml, form=form, tab="posting", structures=picker.choices(),
                           role_groups=role_groups(roles))


def _save_posting(ml: MailingList, form: PostingForm, structure: Structure) -> bool:
    rules = admin.PostingRules(form.policy.data, form.hold.data == "hold", tuple(form.roles.data or ()),
                               structure.id, form.addresses.data or "", form.moderators.data or "")
    try:
        admin.set_posting_rules(current_user, ml, rules, ip=client_ip())
    except AdminError as error:
        flash(texts.admin_error(error), "error")
        return False
    flash(_("Règles d’envoi enregistrées."), "ok")
    return True


@bp.get("/lists/<int:list_id>/optouts")
@staff_required
def list_optouts(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    source, search = request.args.get("source", "")[:16], request.args.get("q", "")[:100]
    query = subscribers.opt_outs(ml, source=source, search=search)
    rows = list(query.paginate(page_number(), PAGE))
    return render_template("admin/list_optouts.html", ml=ml, rows=rows, total=query.count(), source=source,
                           search=search, sources=subscribers.opt_out_sources(ml), page=page_number(),
                           per_page=PAGE, tab="optouts", source_label=journal.source_label)


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
    after, before = request.args.get("after", "")[:254] or None, request.args.get("before", "")[:254] or None
    shown = recipients.recipients_page(current_user, ml, after=after, before=None if after else before, per_page=PAGE)
    return render_template("admin/list_recipients.html", ml=ml, shown=shown, tab="recipients")


@bp.get("/lists/<int:list_id>/recipients.csv")
@staff_required
def list_recipients_csv(list_id: int):  # type: ignore[no-untyped-def]
    ml = current_list(list_id)
    body = stream_with_context(recipients.recipients_csv(current_user, ml, language=str(get_locale())[:2]))
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="destinataires-{ml.local_part}.csv"'})
