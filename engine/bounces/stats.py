"""Delivery statistics for staff: per message and per list, delivered, deferred, failed, bounced and
unsubscribed, with rates. Every figure comes from set-based queries whose cost does not grow with the
number of deliveries of finished messages: their counts are settled once into ``message_stats``.

* delivered, deferred, failed, queued: delivery states (a synchronous 5xx is *failed*);
* bounced: copies accepted by the relay that came back later (hard, soft or policy; not auto-replies);
* unsubscribed: people who left the list (footer link, one-click, mailto, Mon espace) after the message,
  before the list's next one — an unsubscribe link names the list, not the message;
* complained: addresses whose feedback-loop report (ARF) named a copy of the message (per list: named the
  list, in the window), which also took them off the list (``complaints``); not counted as unsubscribed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import peewee as pw

from engine import clock
from engine.bounces.classify import Kind
from engine.bounces.models import BounceEvent, MessageStats, tuples
from engine.lists.models import OptOut
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.listing import MessageRow
from engine.posting.models import Message, MessageState
from engine.prepared import Prepared, PreparedIn, slot

BOUNCED_KINDS = (Kind.HARD, Kind.SOFT, Kind.POLICY)
LEFT_BY_PEOPLE = ("footer", "one-click", "mailto", "espace")  # not staff, not bounces
LIST_WINDOW = timedelta(days=30)  # the lists page sums the messages of the last 30 days
COMPILED_SIZES = 100  # list_figures keeps its statement for pages of up to this many lists
SETTLE_BATCH = 200
_LIST_FIGURES: dict[int, Prepared[tuple[int, str, int]]] = {}
DISTRIBUTED = Message.state.in_([MessageState.SENDING, MessageState.DONE]) & (Message.recipient_count > 0)


@dataclass
class Figures:
    recipients: int = 0
    sent: int = 0  # delivered to the relay (or the capture)
    deferred: int = 0
    failed: int = 0
    queued: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    complained: int = 0

    def add(self, other: Figures) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    @staticmethod
    def _rate(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def sent_rate(self) -> float | None:
        return self._rate(self.sent, self.recipients)

    @property
    def deferred_rate(self) -> float | None:
        return self._rate(self.deferred, self.recipients)

    @property
    def failed_rate(self) -> float | None:
        return self._rate(self.failed, self.recipients)

    @property
    def bounced_rate(self) -> float | None:
        return self._rate(self.bounced, self.sent)

    @property
    def unsubscribed_rate(self) -> float | None:
        return self._rate(self.unsubscribed, self.sent)

    @property
    def complained_rate(self) -> float | None:  # what providers judge senders on (Gmail: stay under 0.3 %)
        return self._rate(self.complained, self.sent)


def settle(limit: int = SETTLE_BATCH) -> int:
    """Count the deliveries of finished messages once (scheduled); returns how many were settled."""
    pending = (Message.select(Message.id).where((Message.state == MessageState.DONE) & ~pw.fn.EXISTS(
        MessageStats.select(pw.SQL("1")).where(MessageStats.message == Message.id))).limit(limit))
    ids = [row[0] for row in tuples(pending)]
    if not ids:
        return 0
    counts = (Message.select(Message.id, _count_state(DeliveryState.SENT), _count_state(DeliveryState.FAILED),
                             pw.Value(clock.now()))
              .join(Delivery, pw.JOIN.LEFT_OUTER, on=(Delivery.message == Message.id))
              .where(Message.id.in_(ids)).group_by(Message.id))
    fields_ = [MessageStats.message, MessageStats.sent, MessageStats.failed, MessageStats.settled_at]
    MessageStats.insert_from(counts, fields_).on_conflict_ignore().execute()
    return len(ids)


def _count_state(state: str) -> pw.Function:
    return pw.fn.COALESCE(pw.fn.SUM(pw.Case(None, [(Delivery.state == state, 1)], 0)), 0)


def _live_counts(messages: Sequence[Message | MessageRow]) -> dict[int, Figures]:
    """Messages not settled yet: sent and failed from their running counters (``outbox.record`` adds each batch
    of results), deferred through the (message, state) index (copies waiting for a retry: few), queued the
    rest. Never a count of a 100,000-copy message's delivery rows."""
    if not messages:
        return {}
    deferred = {int(mid): int(n) for mid, n in _DEFERRED.rows([m.id for m in messages])}
    return {m.id: Figures(sent=m.sent_count, failed=m.failed_count, deferred=deferred.get(m.id, 0),
                          queued=max(m.recipient_count - m.sent_count - m.failed_count - deferred.get(m.id, 0), 0))
            for m in messages}


def _bounced(message_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(bounced copies, complaining addresses) of each message."""
    if not message_ids:
        return {}
    return {row[0]: (row[1], row[2]) for row in _BOUNCED.rows(message_ids)}


def _unsubscribed(messages: Sequence[Message | MessageRow]) -> dict[int, int]:
    """Opt-outs of each message's list between it and the list's next distributed message."""
    if not messages:
        return {}
    list_ids = sorted({m.mailing_list_id for m in messages})
    return {row[0]: row[1] for row in _UNSUBSCRIBED.rows(list_ids, [m.id for m in messages])}


def _unsubscribed_query(list_ids: list[pw.Value], message_ids: list[pw.Value]) -> pw.SelectBase:
    nxt = pw.fn.LEAD(Message.received_at).over(partition_by=[Message.mailing_list],
                                               order_by=[Message.received_at, Message.id])
    spans = (Message.select(Message.id.alias("mid"), Message.mailing_list.alias("lid"),
                            Message.received_at.alias("start"), nxt.alias("stop"))
             .where(Message.mailing_list.in_(list_ids) & DISTRIBUTED)
             .cte("spans", columns=("mid", "lid", "start", "stop")))
    query = (OptOut.select(spans.c.mid, pw.fn.COUNT(OptOut.id)).from_(spans)
             .join(OptOut, on=((OptOut.mailing_list == spans.c.lid) & (OptOut.created_at >= spans.c.start)
                               & (spans.c.stop.is_null() | (OptOut.created_at < spans.c.stop))))
             .where(spans.c.mid.in_(message_ids) & OptOut.source.in_(LEFT_BY_PEOPLE))
             .group_by(spans.c.mid).with_cte(spans))
    return query


# A page's statements, compiled once per number of messages (or lists) on it (engine/prepared.py).
_SETTLED = PreparedIn(lambda ids: MessageStats.select(MessageStats.message, MessageStats.sent, MessageStats.failed)
                      .where(MessageStats.message.in_(ids)))
_DEFERRED = PreparedIn(lambda ids: Delivery.select(Delivery.message, pw.fn.COUNT(pw.SQL("*")))
                       .where(Delivery.message.in_(ids) & (Delivery.state == DeliveryState.DEFERRED))
                       .group_by(Delivery.message))
_UNSUBSCRIBED = PreparedIn(_unsubscribed_query)
BOUNCED = (BounceEvent.source == "dsn") & BounceEvent.final & BounceEvent.kind.in_(BOUNCED_KINDS)
COMPLAINED = (BounceEvent.source == "arf") & (BounceEvent.kind == Kind.COMPLAINT)
# Bounced copies and complaining addresses of each message, in one statement (a page's budget of queries).
_BOUNCED = PreparedIn(lambda ids: BounceEvent.select(
    BounceEvent.message, pw.fn.COUNT(pw.Case(None, [(BOUNCED, BounceEvent.delivery_id)], None).distinct()),
    pw.fn.COUNT(pw.Case(None, [(COMPLAINED, BounceEvent.email_key)], None).distinct()))
    .where(BounceEvent.message.in_(ids) & (BOUNCED | COMPLAINED)).group_by(BounceEvent.message))


def message_figures(messages: Sequence[Message | MessageRow]) -> dict[int, Figures]:
    """Figures of each message (a page of them: a few grouped queries, whatever their size)."""
    ids = [m.id for m in messages]
    settled = {row[0]: row[1:] for row in _SETTLED.rows(ids)}
    live = _live_counts([m for m in messages if m.id not in settled])
    bounced, unsubscribed = _bounced(ids), _unsubscribed(messages)
    found: dict[int, Figures] = {}
    for message in messages:
        figures = live.get(message.id, Figures())
        if message.id in settled:
            figures = Figures(sent=settled[message.id][0], failed=settled[message.id][1])
        figures.recipients = message.recipient_count
        figures.bounced, figures.complained = bounced.get(message.id, (0, 0))
        figures.unsubscribed = unsubscribed.get(message.id, 0)
        found[message.id] = figures
    return found


def list_figures(list_ids: list[int], since: datetime | None = None) -> dict[int, Figures]:
    """Figures of each list over its messages since ``since`` (``LIST_WINDOW`` ago): one aggregate query, a
    UNION ALL of grouped branches giving (list, figure, value) rows. Finished messages are read from their
    settled counts; only messages still sending count their deliveries (by the (message, state) index).
    The statement is compiled once per number of lists (a page holds at most fifty)."""
    found = {list_id: Figures() for list_id in list_ids}
    if not list_ids:
        return found
    since = since or clock.now() - LIST_WINDOW
    compiled = _LIST_FIGURES.get(len(list_ids))
    if compiled is None:
        count = len(list_ids)
        compiled = Prepared(lambda: _list_figures_query([slot(f"l{i}") for i in range(count)],
                                                        slot("since", Message.received_at)))
        if count <= COMPILED_SIZES:
            _LIST_FIGURES[count] = compiled
    values: dict[str, object] = {f"l{i}": list_id for i, list_id in enumerate(list_ids)}
    for list_id, figure, value in compiled.rows(**values, since=since):
        figures = found[list_id]
        setattr(figures, figure, getattr(figures, figure) + int(value or 0))
    for figures in found.values():  # "queued" above counted the deferred copies too
        figures.queued = max(figures.queued - figures.deferred, 0)
    return found


def _list_figures_query(list_ids: list[pw.Value], since: pw.Value) -> pw.SelectBase:
    recent = (Message.mailing_list.in_(list_ids) & (Message.received_at >= since) & DISTRIBUTED)
    lid = Message.mailing_list.alias("lid")
    unsettled = ~pw.fn.EXISTS(MessageStats.select(pw.SQL("1")).where(MessageStats.message == Message.id))
    # messages still sending: their running counters (engine/outbound/outbox.py), the deferred copies by the
    # (message, state) index; never a count of every delivery
    live = (Delivery.select(Delivery.message.alias("mid"), pw.fn.COUNT(pw.SQL("*")).alias("n"))
            .where(Delivery.message.in_(Message.select(Message.id).where(recent & unsettled))
                   & (Delivery.state == DeliveryState.DEFERRED))
            .group_by(Delivery.message).alias("live"))
    branches: list[pw.SelectBase] = [
        Message.select(lid, pw.Value("recipients").alias("figure"), pw.fn.SUM(Message.recipient_count))
        .where(recent).group_by(Message.mailing_list),
        *[Message.select(lid, pw.Value(name).alias("figure"), pw.fn.SUM(column))
          .join(MessageStats, on=(MessageStats.message == Message.id)).where(recent).group_by(Message.mailing_list)
          for name, column in (("sent", MessageStats.sent), ("failed", MessageStats.failed))],
        *[Message.select(lid, pw.Value(name).alias("figure"), pw.fn.SUM(column)).where(recent & unsettled)
          .group_by(Message.mailing_list)
          for name, column in (("sent", Message.sent_count), ("failed", Message.failed_count),
                               ("queued", Message.recipient_count - Message.sent_count - Message.failed_count))],
        Message.select(lid, pw.Value("deferred").alias("figure"), pw.fn.SUM(live.c.n))
        .join(live, on=(live.c.mid == Message.id)).group_by(Message.mailing_list),
        BounceEvent.select(lid, pw.Value("bounced").alias("figure"), pw.fn.COUNT(BounceEvent.delivery_id.distinct()))
        .join(Message, on=(BounceEvent.message == Message.id))
        .where(recent & BOUNCED)
        .group_by(Message.mailing_list),
        OptOut.select(OptOut.mailing_list.alias("lid"), pw.Value("unsubscribed").alias("figure"),
                      pw.fn.COUNT(OptOut.id))
        .where(OptOut.mailing_list.in_(list_ids) & (OptOut.created_at >= since) & OptOut.source.in_(LEFT_BY_PEOPLE))
        .group_by(OptOut.mailing_list),
        BounceEvent.select(BounceEvent.mailing_list.alias("lid"), pw.Value("complained").alias("figure"),
                           pw.fn.COUNT(BounceEvent.email_key.distinct()))
        .where(BounceEvent.mailing_list.in_(list_ids) & (BounceEvent.at >= since) & COMPLAINED)
        .group_by(BounceEvent.mailing_list),
    ]
    query = branches[0]
    for branch in branches[1:]:
        query = query + branch  # UNION ALL (a CompoundSelectQuery): one round trip
    return query
