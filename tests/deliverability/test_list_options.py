"""Staff choose a list's deliverability options on its settings page (French, with the English catalogue)."""

from __future__ import annotations

from engine.audit import AuditEvent
from tests.portal.test_admin import app, federal, the_list, token_of  # noqa: F401 (fixtures)


def test_staff_set_dmarc_mode_author_header_sender_check_and_arc(federal) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ml = the_list("invites.ag2026")
    path = f"/admin/lists/{ml.id}"
    page = federal.get(path).get_data(as_text=True)
    assert "Expéditeur affiché (DMARC)" in page and "Sceller les messages relayés (ARC)" in page
    response = federal.post(path, data={
        "csrf_token": token_of(federal, path), "name": ml.name, "reply_to": "author", "dmarc_mode": "automatic",
        "dmarc_author_in": "cc", "sender_check": "confirm", "arc_seal": "y"})
    assert response.status_code == 302
    saved = the_list("invites.ag2026")
    assert (saved.dmarc_mode, saved.dmarc_author_in, saved.sender_check, saved.arc_seal) == (
        "automatic", "cc", "confirm", True)
    event = AuditEvent.select().order_by(AuditEvent.id.desc()).get()
    assert "dmarc_mode" in event.details and "arc_seal" in event.details


def test_an_unknown_option_is_refused(federal) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ml = the_list("invites.ag2026")
    path = f"/admin/lists/{ml.id}"
    response = federal.post(path, data={"csrf_token": token_of(federal, path), "name": ml.name,
                                        "reply_to": "author", "dmarc_mode": "sometimes", "dmarc_author_in": "cc",
                                        "sender_check": "hold"})
    assert response.status_code == 200  # the form shows its error; nothing saved
    assert the_list("invites.ag2026").dmarc_mode == "always"
