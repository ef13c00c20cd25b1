"""``headers.put`` stores a short plain ASCII header value as it is: a copy must come out byte for byte as when the
email package parses the value first (engine/posting/headers.py), for the list headers and the DMARC From."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

import pytest

from engine.posting import headers
from engine.posting.render import OUTPUT_POLICY

VALUES = ['"Bureau" <bureau.listes.example.fr>', "<mailto:bureau@listes.example.fr>", "NO", "list",
          "List-Unsubscribe=One-Click", "Jean Dupont via Bureau <bureau@listes.example.fr>",
          '"J. Dupont via Bureau" <bureau@listes.example.fr>', "jean@example.fr", "a  b", " lead", "trail ",
          "=?utf-8?q?=C3=89lodie?= <e@example.fr>", "Élodie via Bureau <bureau@example.fr>", "x" * 90,
          "A Rather Long Display Name Of Someone via Bureau <bureau@listes.example.fr>", "a,b", "(comment) a@b.fr",
          '"unterminated <a@b.fr>', "<>", "", "tab\there"]


@pytest.mark.parametrize("name", ["List-Id", "From", "Reply-To", "Cc", "X-Original-From", "X-Loop", "Precedence"])
def test_a_value_put_as_it_is_is_written_as_the_email_package_writes_it(name: str) -> None:
    for value in VALUES:
        parsed, kept = EmailMessage(policy=policy.default), EmailMessage(policy=policy.default)
        parsed[name] = value
        headers.put(kept, name, value)
        assert kept.as_bytes(policy=OUTPUT_POLICY) == parsed.as_bytes(policy=OUTPUT_POLICY), (name, value)
