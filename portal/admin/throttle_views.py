"""Throttling rules in the administration: every staff member sees the groups and their current pace;
federation administrators edit them. Registered on the ``admin`` blueprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from engine.directory import staff
from engine.outbound import throttle_rules
from engine.outbound.models import ThrottleRule
from portal.access import staff_required
from portal.admin.views import bp

_ERRORS: dict[str, Callable[[dict[str, Any]], str]] = {
    "bad_label": lambda p: _("Le nom du groupe est obligatoire (100 caractères au plus)."),
    "default_lists_nothing": lambda p: _("La règle par défaut vaut pour tous les autres domaines : elle n’en "
                                         "liste aucun."),
    "bad_domain": lambda p: _("Domaine invalide : « %(value)s »", value=p.get("value", "")),
    "bad_mx": lambda p: _("Serveur MX invalide : « %(value)s » (un nom d’hôte, ou *.suffixe)",
                          value=p.get("value", "")),
    "bad_limit": lambda p: _("Les limites vont de 1 à %(largest)s ; laissez vide pour aucune limite.",
                             largest=p.get("largest", "")),
    "domain_taken": lambda p: _("%(value)s appartient déjà au groupe « %(group)s ».", value=p.get("value", ""),
                                group=p.get("group", "")),
}


def _limit(label: Any) -> IntegerField:
    return IntegerField(label, validators=[Optional(), NumberRange(min=1, max=throttle_rules.LARGEST)])


class ThrottleRuleForm(FlaskForm):
    label = StringField(_l("Nom du groupe"), validators=[DataRequired(), Length(max=100)])
    domains = TextAreaField(_l("Domaines (un par ligne)"), validators=[Length(max=20_000)])
    mx_patterns = TextAreaField(_l("Serveurs MX (un par ligne : nom d’hôte ou *.suffixe)"),
                                validators=[Length(max=5_000)])
    per_minute = _limit(_l("Messages par minute"))
    per_hour = _limit(_l("Messages par heure"))
    per_day = _limit(_l("Messages par jour"))
    connections = _limit(_l("Connexions simultanées"))
    per_connection = _limit(_l("Messages par connexion"))


@bp.get("/throttle")
@staff_required
def throttle():  # type: ignore[no-untyped-def]
    return render_template("admin/throttle.html", rows=throttle_rules.overview(),
                           editable=staff.is_federation_admin(current_user))


@bp.route("/throttle/<int:rule_id>", methods=["GET", "POST"])
@staff_required
def throttle_edit(rule_id: int):  # type: ignore[no-untyped-def]
    if not staff.is_federation_admin(current_user):
        abort(403)
    rule = ThrottleRule.get_or_none(ThrottleRule.id == rule_id)
    if rule is None:
        abort(404)
    form = ThrottleRuleForm(obj=rule)
    if form.validate_on_submit():
        limits = {field: getattr(form, field).data for field in throttle_rules.LIMIT_FIELDS}
        try:
            throttle_rules.update_rule(current_user, rule.id, label=form.label.data or "",
                                       domains=form.domains.data or "", mx_patterns=form.mx_patterns.data or "",
                                       limits=limits)
        except throttle_rules.RuleError as error:
            describe = _ERRORS.get(error.code)
            flash(describe(error.params) if describe else error.code, "error")
        else:
            flash(_("Règle « %(label)s » enregistrée ; les moteurs l’appliquent dans la minute.",
                    label=form.label.data), "success")
            return redirect(url_for("admin.throttle"))
    return render_template("admin/throttle_edit.html", rule=rule, form=form)
