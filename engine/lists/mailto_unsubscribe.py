"""Unsubscribe by mail: the ``mailto:`` of List-Unsubscribe (RFC 2369) reaches ``LIST-unsubscribe@``.

The subject holds the recipient's personal token (the same as in the https link), so the right
members leave even when a family shares the address; without a valid token, whoever uses the
sender's address leaves the list.
"""

from __future__ import annotations

import re
from email.message import Message
from email.utils import getaddresses

from engine.config import Settings
from engine.directory.models import Member
from engine.lists import optouts
from engine.lists.models import MailingList
from engine.tokens import BadToken, load_unsubscribe_token

TOKEN = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?")


def handle(settings: Settings, list_id: int, envelope_sender: str, headers: Message) -> int:
    """Record the opt-outs asked for; returns how many members or addresses left the list."""
    mailing_list = MailingList.get_by_id(list_id)
    for candidate in TOKEN.findall(str(headers.get("Subject", ""))):
        try:
            if load_unsubscribe_token(settings, candidate).list_id != list_id:
                continue
        except BadToken:
            continue
        outcome = optouts.unsubscribe_with_token(settings, candidate, "mailto")
        return len(outcome.members) or 1
    senders = [addr for _, addr in getaddresses(headers.get_all("From", []) + [envelope_sender]) if addr]
    for address in senders:
        members = list(Member.using_address(address))
        for member in members:
            optouts.leave_as_member(mailing_list, member, source="mailto")
        if not members:
            optouts.leave(mailing_list, email_key=address.lower(), source="mailto")
        return max(1, len(members))
    return 0
