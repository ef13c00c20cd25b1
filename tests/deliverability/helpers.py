"""Sending posts to a running engine and reading what the sink captured."""

from __future__ import annotations

import smtplib
from email import policy
from email.message import EmailMessage
from typing import Any

LIST = "comite_directeur.comite@listes.example.fr"


def make_post(author: str = "Élodie Dupré <elodie.dupre@example.fr>", subject: str = "Sortie à Cassis",
              **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = author
    message["To"] = LIST
    message["Subject"] = subject
    message["Date"] = "Mon, 30 Nov 2026 09:00:00 +0100"
    message["Message-ID"] = "<sortie-cassis@example.fr>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Bonjour à tous,\nrendez-vous samedi au port à 8 h.\n")
    message.add_alternative("<html><body><p>Bonjour à tous,</p><p>rendez-vous samedi au port.</p></body></html>",
                            subtype="html")
    return message


def as_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=policy.SMTP)


def send_raw(engine: Any, data: bytes, sender: str, recipients: list[str] | None = None) -> dict[str, Any]:
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        return client.sendmail(sender, recipients or [LIST], data)  # type: ignore[return-value]
