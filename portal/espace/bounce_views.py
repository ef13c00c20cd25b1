"""Mon espace when the member's address bounces: the warning's data for the page, the test message (probe)
and its link. Registered on the ``espace`` blueprint; the rules live in ``engine/bounces/member.py``."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from engine.bounces import member as bounces
from portal.espace.forms import ButtonForm
from portal.espace.views import bp

PROBE_LINK_STATUS = {"invalid": 404, "expired": 410, "changed": 409}


@bp.post("/adresse/test")
@login_required
def send_probe() -> Response:
    """The warning's button: mail a test message whose link re-enables the address."""
    if ButtonForm().validate_on_submit():
        if bounces.send_probe(g.settings, current_user):
            flash(_("Un message de test vient d’être envoyé à %(address)s. Ouvrez le lien qu’il contient.",
                    address=current_user.email), "info")
        else:
            flash(_("Un message de test est déjà parti il y a quelques minutes : attendez-le avant d’en "
                    "demander un autre."), "error")
    return redirect(url_for("espace.index"))


@bp.route("/adresse/verification/<token>", methods=["GET", "POST"])
def probe(token: str) -> Response | str | tuple[str, int]:
    """The test message's link: GET shows a button and changes nothing (mail scanners follow links)."""
    form = ButtonForm()
    if not form.validate_on_submit():
        return render_template("espace/probe.html", form=form)
    try:
        member = bounces.confirm_probe(g.settings, token)
    except bounces.ProbeLinkError as exc:
        return render_template("espace/probe_error.html", reason=exc.reason), PROBE_LINK_STATUS[exc.reason]
    if current_user.is_authenticated and current_user.id == member.id:
        flash(_("Votre adresse reçoit à nouveau les messages des listes."), "info")
        return redirect(url_for("espace.index"))
    return render_template("espace/probe_done.html", address=member.email)
