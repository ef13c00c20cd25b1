"""Notices the product mails itself: per-language templates, header safety, the capture path."""

from __future__ import annotations

import pytest

from engine import notices
from engine.config import Settings
from engine.outbound.mail import read_captured


def test_render_picks_the_language_and_falls_back_to_french() -> None:
    assert notices.render("test_notice", "en", name="Ana") == ("Test for Ana", "Hello Ana,\nthis is a test.\n")
    assert notices.render("test_notice", "de", name="Ana")[0] == "Essai pour Ana"
    assert notices.render("test_notice", None, name="Ana")[0] == "Essai pour Ana"


def test_send_notice_reaches_the_capture(settings: Settings) -> None:
    notices.send_notice(settings, "test_notice", "Zoe@Example.org", language="fr", name="Zoé")
    [message] = read_captured(settings.capture_dir)
    assert message["Subject"] == "Essai pour Zoé"
    assert message["To"] == "Zoe@Example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["From"].addresses[0].addr_spec == "noreply@listes.example.fr"
    assert "ceci est un essai" in message.get_content()


@pytest.mark.parametrize("value", ["Ana\r\nBcc: victim@example.org", "Ana\nX: y", "Ana\rX"])
def test_line_breaks_in_header_values_are_refused(settings: Settings, value: str) -> None:
    with pytest.raises(notices.HeaderInjection):
        notices.send_notice(settings, "test_notice", "ana@example.org", name=value)
    with pytest.raises(notices.HeaderInjection):
        notices.send_notice(settings, "test_notice", value + "@example.org", name="Ana")
    assert read_captured(settings.capture_dir) == []


def test_a_notice_to_an_internationalised_domain_goes_to_its_a_label(settings: Settings) -> None:
    """An address change to jerome@plongée-13.fr gets its confirmation through a relay without SMTPUTF8: To and
    RCPT carry the A-label (an encoded word in an address is invalid, RFC 2047 §5); IDNA2008 refusals raise."""
    import dataclasses

    from engine.outbound import idn
    from tests.support.sink import Sink, SinkHandler

    relay = Sink(SinkHandler(), smtputf8=False)
    relay.start()
    try:
        sent = dataclasses.replace(settings, smarthost=relay.url)
        notices.send_notice(sent, "test_notice", "Jerome@Plongée-13.fr", language="fr", name="Jérôme")
        with pytest.raises(idn.InvalidDomain):
            notices.send_notice(sent, "test_notice", "x@exa\u2603mple.fr", language="fr", name="X")
    finally:
        relay.stop()
    [copy] = relay.handler.received
    assert copy.rcpt_tos == ["Jerome@xn--plonge-13-f4a.fr"] and "SMTPUTF8" not in copy.mail_options
    assert b"\r\nTo: Jerome@xn--plonge-13-f4a.fr\r\n" in copy.data and b"plong" not in copy.data.replace(b"xn--plonge", b"")
