"""Throttling rules as staff see and edit them: an overview with each group's current pace, and the
update a federation administrator makes (validated here, audited). Engines reload rules within
half a minute (``pacer.RULES_TTL``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine import audit, clock
from engine.directory import staff
from engine.directory.models import Member
from engine.outbound.models import ThrottleRule, ThrottleState

# A domain or MX host name (RFC 1035 §2.3.1 labels; RFC 5890 A-labels are ASCII too).
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
LIMIT_FIELDS = ("per_minute", "per_hour", "per_day", "connections", "per_connection")
LARGEST = 1_000_000


class RuleError(ValueError):
    """A rule cannot be saved: ``code`` names the sentence the portal shows, ``params`` fill it in."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code, params)
        self.code, self.params = code, params


@dataclass(frozen=True)
class RuleRow:
    rule: ThrottleRule
    factor: float  # the current share of the per-minute rate (1.0: full pace)
    hour_count: int
    day_count: int
    slowdowns: int
    groups: int  # pace rows: 1 for a group, one per domain met under the default rule


def overview() -> list[RuleRow]:
    """Every rule, the default last, with what its pace looks like now."""
    states = list(ThrottleState.select())
    rows = []
    for rule in ThrottleRule.select().order_by(ThrottleRule.name == "default", ThrottleRule.label):
        mine = [s for s in states if s.key == rule.name or (rule.name == "default" and s.key.startswith("default:"))]
        rows.append(RuleRow(rule, min((s.factor for s in mine), default=1.0), sum(s.hour_count for s in mine),
                            sum(s.day_count for s in mine), sum(s.slowdowns for s in mine), len(mine)))
    return rows


def _lines(text: str) -> list[str]:
    return list(dict.fromkeys(line.strip().lower().rstrip(".") for line in text.splitlines() if line.strip()))


def _check_hosts(names: list[str], what: str, wildcard: bool) -> None:
    for name in names:
        host = name[2:] if wildcard and name.startswith("*.") else name
        if not _HOST.match(host):
            raise RuleError(what, value=name[:100])


def _check_limits(limits: dict[str, int | None]) -> None:
    for field, value in limits.items():
        if field not in LIMIT_FIELDS:
            raise RuleError("unknown_limit", value=field)
        if value is not None and not 1 <= value <= LARGEST:
            raise RuleError("bad_limit", largest=LARGEST)


def update_rule(actor: Member, rule_id: int, *, label: str, domains: str, mx_patterns: str,
                limits: dict[str, int | None]) -> ThrottleRule:
    """Change one rule (federation administrators only: ``staff.NotAllowed`` otherwise)."""
    if not staff.is_federation_admin(actor):
        raise staff.NotAllowed("only federation administrators edit throttling rules")
    rule = ThrottleRule.get_by_id(rule_id)
    label = " ".join(label.split())
    if not label or len(label) > 100:
        raise RuleError("bad_label")
    domain_list, mx_list = _lines(domains), _lines(mx_patterns)
    if rule.name == "default" and (domain_list or mx_list):
        raise RuleError("default_lists_nothing")
    _check_hosts(domain_list, "bad_domain", wildcard=False)
    _check_hosts(mx_list, "bad_mx", wildcard=True)
    _check_limits(limits)
    for other in ThrottleRule.select().where(ThrottleRule.id != rule.id):
        shared = sorted(set(domain_list) & set(other.domain_list))
        if shared:
            raise RuleError("domain_taken", value=shared[0], group=other.label)
    before = {field: getattr(rule, field) for field in ("label", "domains", "mx_patterns", *LIMIT_FIELDS)}
    rule.label, rule.domains, rule.mx_patterns = label, "\n".join(domain_list), "\n".join(mx_list)
    for field in LIMIT_FIELDS:
        setattr(rule, field, limits.get(field))
    rule.updated_at = clock.now()
    rule.save()
    changed = {field: [old, getattr(rule, field)] for field, old in before.items() if getattr(rule, field) != old}
    audit.record("throttle.updated", rule, actor=actor, rule=rule.name, changed=changed)
    return rule
