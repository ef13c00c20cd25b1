"""Copies built several at a time for the lanes (``Dispatch.together``): order, slow-downs and stops keep their rules."""

from __future__ import annotations

from engine.outbound.builder import MAX_TOGETHER, TOGETHER_BYTES, together
from engine.outbound.dispatch import Dispatch
from engine.outbound.outbox import Claimed
from engine.outbound.smtp import Item
from engine.outbound.throttle import UNLIMITED, Group


class Built:
    """A stand-in builder: records how copies were asked for; ``broken`` ids cannot be built."""

    def __init__(self, broken: frozenset[int] = frozenset()) -> None:
        self.calls: list[list[int]] = []
        self.broken = broken

    def one(self, claim: Claimed) -> Item | None:
        self.calls.append([claim.id])
        return None if claim.id in self.broken else self._item(claim)

    def many(self, claims: list[Claimed]) -> list[Item | None]:
        self.calls.append([claim.id for claim in claims])
        return [None if claim.id in self.broken else self._item(claim) for claim in claims]

    @staticmethod
    def _item(claim: Claimed) -> Item:
        return claim.id, f"l-bounces+{claim.id}@listes.example.fr", claim.address, b"copy\r\n"


def claims(*ids: int) -> list[Claimed]:
    return [Claimed(n, 1, f"r{n}@example.org", "", "", 1) for n in ids]


def dispatch(built: Built, size: int, stopping: list[bool] | None = None) -> Dispatch:
    flag = stopping if stopping is not None else [False]
    return Dispatch(built.one, lambda: flag[0], build_many=built.many, together=size)


def taken(d: Dispatch) -> list[int]:
    found = []
    while (item := d.take_any()) is not None:
        found.append(item[0])
    return found


def test_copies_are_built_together_and_go_out_in_claim_order() -> None:
    built = Built(broken=frozenset({5}))
    d = dispatch(built, 3)
    d.add(UNLIMITED, claims(1, 2, 3, 4, 5, 6, 7))
    assert taken(d) == [1, 2, 3, 4, 6, 7]  # 5 could not be built: answered by the builder, not sent
    assert built.calls == [[1, 2, 3], [4, 5, 6], [7]]  # the last one alone
    assert d.left() == {}


def test_built_copies_of_a_group_that_slows_down_are_given_back_not_sent() -> None:
    built = Built()
    d = dispatch(built, 4)
    orange = Group("orange", "orange")
    d.add(orange, claims(1, 2, 3, 4))
    d.add(UNLIMITED, claims(5, 6))
    session = d.open(0)
    assert session is not None and session.take() is not None  # 1, 2, 3 and 4 built, 1 handed out
    d.slow(1)  # its reply said "slow down"
    assert taken(d) == [5, 6]
    assert d.left() == {orange: [2, 3, 4]}  # never on the wire: due again later, attempt not counted


def test_a_stop_gives_back_the_built_copies_not_yet_sent() -> None:
    built, stopping = Built(), [False]
    d = dispatch(built, 4, stopping)
    d.add(UNLIMITED, claims(1, 2, 3, 4, 5))
    assert d.take_any() is not None
    stopping[0] = True
    assert d.take_any() is None
    assert d.left() == {UNLIMITED: [5, 2, 3, 4]}


def test_how_many_are_built_at_once_depends_on_the_copy_size() -> None:
    assert together([10_000]) == MAX_TOGETHER
    assert together([]) == MAX_TOGETHER
    assert together([10_000, TOGETHER_BYTES // 4]) == 4  # the largest message of the batch decides
    assert together([25 * TOGETHER_BYTES]) == 1  # a large post: one copy at a time, as before
