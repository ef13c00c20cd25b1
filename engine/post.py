"""``palanquee post``: send one plain-text message to a list over SMTP, as a mail client would.

For the demo and for checks by hand on a machine without swaks: it speaks to the engine's intake
(``PALANQUEE_SMTP_LISTEN``, or ``--server``) and reports the engine's answer.
"""

from __future__ import annotations

import smtplib
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import click

from engine.config import load_settings, parse_hostport


class PostRefused(Exception):
    """The engine refused the message, or nothing listens at the address; the text says which."""


def build(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body if body.endswith("\n") else body + "\n")
    return message


def send(server: tuple[str, int], message: EmailMessage, sender: str, to: str) -> str:
    """Send over SMTP; returns the engine's reply to DATA (``250 …``)."""
    host, port = server
    try:
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail(sender, ["SMTPUTF8"] if not (sender + to).isascii() else [])
            code, reply = smtp.rcpt(to)
            if code >= 400:
                raise PostRefused(f"{to} refused at RCPT: {code} {reply.decode(errors='replace')}")
            code, reply = smtp.data(message.as_bytes())
            if code >= 400:
                raise PostRefused(f"refused at DATA: {code} {reply.decode(errors='replace')}")
            return f"{code} {reply.decode(errors='replace')}"
    except (ConnectionRefusedError, TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        raise PostRefused(f"no list engine answers at {host}:{port} ({exc}): is `palanquee demo` or "
                          "`palanquee engine` running there?") from exc
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else error
        raise PostRefused(f"refused: {exc.smtp_code} {text}") from exc


@click.command("post")
@click.option("--from", "sender", required=True, help="author address (envelope and From:)")
@click.option("--to", "to", required=True, help="the list address")
@click.option("--subject", default="Essai", show_default=True)
@click.option("--server", default=None, help="host:port of the engine's SMTP intake [PALANQUEE_SMTP_LISTEN]")
@click.argument("body", default="Bonjour à tous", required=False)
def post_command(sender: str, to: str, subject: str, server: str | None, body: str) -> None:
    """Post one message to a list through the engine's SMTP intake (BODY: the text, `-` reads stdin)."""
    try:
        address = parse_hostport(server) if server else load_settings(require_secret=False).smtp_listen
    except ValueError as exc:
        raise click.BadParameter(f"expected {exc}", param_hint="--server") from None
    text = sys.stdin.read() if body == "-" else body
    try:
        reply = send(address, build(sender, to, subject, text), sender, to)
    except PostRefused as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sent to {to} through {address[0]}:{address[1]}: {reply}")
