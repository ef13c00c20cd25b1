"""Mail the product writes itself (address confirmation, change notices, list created, moderation).

Each notice is a Jinja template per language in ``templates/mail/NAME.LANG.txt`` whose first line is
``Subject: …``, then a blank line, then the plain-text body. Rendering happens here, without Flask,
so that the engine and the portal send the same notices; the text goes out through
``engine.outbound.mail.send`` (smarthost or local capture).
"""

from __future__ import annotations

from datetime import timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2

from engine import clock
from engine.config import Settings
from engine.directory.models import RateEvent
from engine.outbound import mail

if TYPE_CHECKING:
    from engine.lists.models import MailingList

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
LANGUAGES = ("fr", "en")

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=False,  # plain text
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


class HeaderInjection(ValueError):
    """A value meant for one header line holds a line break."""


def safe_header_value(value: str) -> str:
    """Refuse CR and LF in a header value that comes from people or templates (CVE-2024-6923 predates
    this Python's fix, so the email package alone does not stop header injection here)."""
    if "\r" in value or "\n" in value:
        raise HeaderInjection("line break in a header value")
    return value


def render(template: str, language: str | None, /, **context: Any) -> tuple[str, str]:
    """(subject, body) of notice ``template`` in ``language`` (French when absent or unknown)."""
    language = language if language in LANGUAGES else "fr"
    text = _environment.get_template(f"{template}.{language}.txt").render(**context)
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject: "):
        raise ValueError(f"mail template {template}.{language}.txt must start with 'Subject: '")
    return safe_header_value(head[len("Subject: "):].strip()), body


def sender_address(settings: Settings) -> str:
    """The address notices come from: PALANQUEE_MAIL_FROM, else PALANQUEE_ADMIN_EMAIL, else noreply@ the
    portal's host."""
    return settings.mail_from or settings.admin_email or f"noreply@{urlsplit(settings.base_url).hostname or 'localhost'}"


DAILY_PREFIX = "mail:"  # rate events of mail the product sends (the portal counts logins under other keys)
DAY = timedelta(days=1)


def list_sender(mailing_list: MailingList) -> str:
    """The envelope sender of mail the engine sends about a list: its ``-bounces`` address, which the
    intake accepts, so that a bounce of a notice comes back to the engine instead of being refused."""
    return f"{mailing_list.local_part}-bounces@{mailing_list.domain.name}"


def within_daily_limit(limits: dict[str, int]) -> bool:
    """Whether one more event under each key stays within its limit over the last 24 hours; if so, it
    is counted under every key (``RateEvent``: every engine and portal process shares the counts)."""
    now = clock.now()
    RateEvent.delete().where(RateEvent.key.startswith(DAILY_PREFIX) & (RateEvent.at < now - DAY)).execute()
    keys = {DAILY_PREFIX + key[:300 - len(DAILY_PREFIX)]: limit for key, limit in limits.items()}
    for key, limit in keys.items():
        if RateEvent.select().where((RateEvent.key == key) & (RateEvent.at > now - DAY)).count() >= limit:
            return False
    RateEvent.insert_many([{"key": key, "at": now} for key in keys]).execute()
    return True


AUTHOR_NOTICES_PER_DAY = 10  # notices about their posts to one author address (held, to confirm, rejected, failed)
AUTHOR_NOTICES_PER_LIST_PER_DAY = 100  # idem, to all authors of one list: forged From addresses are free


def within_author_limits(author: str, list_id: int) -> bool:
    """Whether one more notice may go to a post's author (``From``: forged at will) and, if so, count it.

    Counted by the address's case-insensitive key (``Victim@`` and ``victim@`` are one mailbox) and per list,
    so that forged posts cannot turn the engine into a mail cannon (issue 11, finding 11).
    """
    return within_daily_limit({f"author-notice:{author.strip().lower()}": AUTHOR_NOTICES_PER_DAY,
                               f"author-notice-list:{list_id}": AUTHOR_NOTICES_PER_LIST_PER_DAY})


def send_notice(settings: Settings, template: str, to: str, /, *, language: str | None = None,
                headers: dict[str, str] | None = None, sender: str | None = None, **context: Any) -> EmailMessage:
    """Render notice ``template`` and send it to ``to`` now, in ``language`` or else PALANQUEE_DEFAULT_LANGUAGE;
    returns the message sent. ``sender`` is the envelope sender (default: the From address);
    ``list_sender`` for mail about a list.
    """
    subject, body = render(template, language or settings.default_language, settings=settings, **context)
    message = EmailMessage()
    message["From"] = formataddr(("Palanquée", sender_address(settings)))
    message["To"] = Address(addr_spec=safe_header_value(to))
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    for key, value in (headers or {}).items():
        del message[key]
        message[key] = safe_header_value(value)
    message.set_content(body)
    mail.send(settings, message, sender=sender)
    return message
