"""Who a list reaches now, as staff read it: a page at a time (keyset), or the whole list as a streamed CSV.

A page starts after (or ends before) an address key, so the hundredth page of a 100,000-address list costs
what the first does; the total shown beside it is the list's stored count (engine/lists/counts.py), not a
count per view. The export streams ``resolve()`` in batches with the members' names, never the whole list in
memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from engine import exports
from engine.directory import staff
from engine.directory.models import Member
from engine.lists import counts
from engine.lists.models import MailingList
from engine.lists.resolve import Recipient, page_of, resolve


@dataclass(frozen=True)
class RecipientsPage:
    rows: list[Recipient]
    total: int | None  # the list's stored count; None until first counted
    previous: str | None  # the key to pass as ``before`` for the page before, if any
    next: str | None  # the key to pass as ``after`` for the page after, if any


def recipients_page(actor: Member | None, ml: MailingList, *, after: str | None = None, before: str | None = None,
                    per_page: int = 100, day: date | None = None) -> RecipientsPage:
    """The recipients just after the address key ``after`` (first page without it), or just before ``before``."""
    staff.require_manage(actor, ml.structure)
    rows, more = page_of(ml, after=after, before=before, size=per_page, day=day)
    total = counts.counts_of([ml])[ml.id].recipients
    if before is not None:  # walked backwards: more means earlier pages; a later page exists (we came from it)
        previous, following = (rows[0].email_key if rows and more else None), (rows[-1].email_key if rows else None)
    else:
        previous, following = (rows[0].email_key if rows and after else None), (rows[-1].email_key if more else None)
    return RecipientsPage(rows, total, previous, following)


CSV_HEADER = ("adresse", "numeros_licence", "noms", "raisons")


def recipients_csv(actor: Member | None, ml: MailingList, *, language: str = "fr",
                   day: date | None = None) -> Iterator[str]:
    """Every recipient now, one CSV line per address (``engine.exports``: every cell neutralised), streamed."""
    staff.require_manage(actor, ml.structure)
    return exports.csv_rows(CSV_HEADER, _recipient_rows(ml, language, day))


def _recipient_rows(ml: MailingList, language: str, day: date | None) -> Iterator[tuple[str, ...]]:
    for batch in resolve(ml, day=day, batch_size=1000):
        ids = {i for r in batch for i in r.member_ids}
        people = {i: (n, f"{first} {last}") for i, n, first, last in Member.select(
            Member.id, Member.licence_number, Member.first_name, Member.last_name)
            .where(Member.id.in_(list(ids))).tuples().iterator()} if ids else {}
        for r in batch:
            known = [people[i] for i in r.member_ids if i in people]
            yield (r.address, " ".join(n for n, _ in known), ", ".join(name for _, name in known),
                   " ; ".join(reason.label(language) for reason in r.reasons))
