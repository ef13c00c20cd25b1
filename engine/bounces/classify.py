"""Classify a message that came back to ``LIST-bounces+TOKEN@`` (or any DSN), and an SMTP reply.

Kinds: ``hard`` (the address does not exist: RFC 3463 5.1.x, 5.2.1), ``soft`` (temporary 4.x.x,
mailbox full x.2.2, other permanent failures of the receiving system), ``policy`` (the message or
the sender was refused: x.7.x, x.6.x, spam, reputation, DMARC: the sender's problem, never the
member's), ``auto-reply`` (RFC 3834 vacation and out-of-office replies), ``complaint`` (a feedback-loop
report, ARF: RFC 5965; never a failure) and ``unknown``.
RFC 3464 reports are read first; other bounces through flufl.bounce's detectors and the tables
below (policy as data). ``palanquee bounces classify`` prints what this module decides.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures  # type: ignore[import-untyped]  # no stubs, no py.typed

from engine import exports
from engine.bounces import arf, dsn

log = logging.getLogger("palanquee.bounces")


class Kind:
    HARD = "hard"
    SOFT = "soft"
    POLICY = "policy"
    AUTO_REPLY = "auto-reply"
    COMPLAINT = "complaint"  # a feedback-loop report (ARF, RFC 5965): engine/bounces/complaints.py
    UNKNOWN = "unknown"
    ALL = (HARD, SOFT, POLICY, AUTO_REPLY, COMPLAINT, UNKNOWN)


@dataclass(frozen=True)
class Classification:
    kind: str
    status: str  # enhanced status code (RFC 3463), or ""
    recipients: tuple[str, ...]  # the failed addresses found, lower case
    diagnostic: str = ""  # the reason as the remote server gave it
    final: bool = True  # False for a delay warning (RFC 3464 "Action: delayed"): not a failure yet

    def line(self, name: str) -> str:
        """The command's output line: name, kind, status, recipients, tab-separated. The name and the
        addresses come from outside (a local part may begin with ``=``): no tab or line break inside a cell,
        and a cell a spreadsheet would read as a formula is neutralised (issue 11, finding 12)."""
        cells = [exports.safe_cell(" ".join(cell.split())) for cell in (self.kind, self.status, " ".join(self.recipients))]
        name = " ".join(name.split())
        return "\t".join([name if name == "-" else exports.safe_cell(name), *cells])  # "-": standard input


def _any(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in phrases), re.IGNORECASE)


# Reasons read in a diagnostic or in a text bounce, in the order they are tried: a full mailbox wins
# over everything (Orange says "552 5.1.1 … Boite du destinataire pleine"), then refusals of the
# message or of the sender, which must never count against the member, then unknown addresses.
MAILBOX_FULL = _any(r"over ?quota", r"quota (exceeded|exceed|depass)", r"mailbox (is |was )?full",
                    r"bo[iî]te (aux lettres |du destinataire |de r[ée]ception )?(est )?pleine",
                    r"insufficient (system )?storage", r"exceeded (its )?storage", r"mail ?folder is (over|full)",
                    r"mailbox (size )?limit exceeded", r"not enough (disk )?space", r"storage (space )?(is )?full")
REFUSED = _any(r"\bspam", r"\bblocked\b", r"block ?list", r"black ?list", r"\b(dns)?rbl\b", r"dnsbl",
               r"spamhaus", r"spamcop", r"barracuda", r"reputation", r"\bdmarc\b", r"\bspf\b", r"\bdkim\b",
               r"policy (reasons|violation)",
               r"rejected (by|due to) (local |our )?policy", r"content (rejected|filter)", r"\bvirus",
               r"malware", r"service refus", r"\bOFR\d*_\d+", r"SFR_IN_", r"unsolicited",
               r"too many (connections|messages|errors)", r"rate[- ]limit", r"relay(ing)? (access )?denied",
               r"not permitted to relay", r"authentication (required|failed)", r"sender (address )?rejected",
               r"sender (is )?not (allowed|authori[sz]ed)", r"poor reputation", r"message (was )?refused",
               r"envoi refus", r"courrier ind[ée]sirable", r"low reputation", r"unauthenticated",
               r"anti-?spoof", r"\bspoof", r"(rejected|refused|blocked) (by|due to|under) [\w -]{0,40}polic(y|ies)")
UNKNOWN_ADDRESS = _any(
    r"user unknown", r"unknown user", r"no such (user|mailbox|recipient|address|account)",
    r"(address|mailbox|account|recipient|user|e-?mail account)( \S+)? (does not|doesn't|did not) exist",
    r"mailbox (is )?unavailable", r"(address|mailbox) (is )?(not found|unknown|invalid)",
    r"n'existe (pas|plus)", r"adresse (e-?mail |[ée]lectronique )?(inconnue|invalide|inexistante)",
    r"destinataire (invalide|inconnu|inexistant)", r"invalid (recipient|mailbox|address|user)",
    r"not listed in (the )?(domino directory|public name)", r"unrouteable address",
    r"no mailbox here", r"(account|mailbox|address) (has been |is )?(disabled|deactivated|closed|suspended)",
    r"unknown (local[- ]part|recipient|address|mailbox)", r"address not found", r"couldn't be found",
    r"could not be found", r"recipient not found", r"user not found", r"utilisateur inconnu",
    r"doesn't have an? \S+ account", r"not a valid (mailbox|user|recipient)", r"user doesn't exist",
    r"bad destination (mailbox )?address", r"recipient (address )?unknown", r"compte (d[ée]sactiv|inexistant|ferm)",
    r"(adresse|destinataire|bo[iî]te|compte|utilisateur|correspondant)\b[^\n.]{0,40}\bintrouvable")

# Enhanced status codes (RFC 3463) by class.subject.detail, then class.subject, then class: first match.
STATUS_KINDS: tuple[tuple[str, str], ...] = (
    ("x.2.2", Kind.SOFT),  # mailbox full: usable as transient (RFC 3463 §3.3)
    ("5.1.7", Kind.POLICY), ("5.1.8", Kind.POLICY),  # the sender's address, not the recipient's
    ("5.2.3", Kind.POLICY), ("5.3.4", Kind.POLICY),  # the message is too big for this recipient
    ("x.7", Kind.POLICY),  # security or policy (5.7.1, 5.7.26 DMARC, 4.7.x throttles)
    ("x.6", Kind.POLICY),  # the content (5.6.7 non-ASCII address to a server without SMTPUTF8)
    ("5.1", Kind.HARD),  # bad mailbox, bad system, null MX (5.1.10, RFC 7505)
    ("5.2.1", Kind.HARD),  # mailbox disabled
    ("4", Kind.SOFT),
    ("5", Kind.SOFT),  # other permanent failures of the receiving system: counted, never alone decisive
)

BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailer|mdaemon|mail delivery)", re.IGNORECASE)
BOUNCE_SUBJECT = _any(
    r"undeliver", r"undelivered", r"delivery (status notification|failure|failed|has failed|problem|report)",
    r"returned mail", r"failure notice", r"mail delivery (failed|failure|system|subsystem)", r"non remis",
    r"non distribu", r"[ée]chec (de (la )?)?(remise|distribution|livraison)", r"could not be delivered",
    r"delayed mail", r"warning: could not send", r"delivery delayed", r"unzustellbar", r"non recapitabil",
    r"impossible (de remettre|d'envoyer|de distribuer)", r"message (not delivered|non d[ée]livr)",
    r"mail system error", r"nondeliverable")
AUTO_SUBJECT = _any(
    r"auto(matic)?[- _]?(reply|response|answer|antwort)", r"r[ée]ponse automatique", r"out of (the )?office",
    r"\babsen(ce|t|te)\b", r"\bcong[ée]s?\b", r"on vacation", r"\bvacation\b", r"autoreply", r"abwesenheit",
    r"fuera de la oficina", r"away from (the office|my (e-?mail|desk))", r"accus[ée] de r[ée]ception",
    r"acknowledge?ment of receipt", r"we have received your (message|e-?mail)")
# A list server's notice about a post (held for moderation, not a member…): for the list's owner, not an absence.
LIST_SERVER = re.compile(r"^(sympa|mailman|listserv|majordomo|ezmlm|lyris|ecartis|smartlist)\b|-(request|owner)@",
                         re.IGNORECASE)
FAILURE_WORDS = _any(r"could not be delivered", r"wasn't delivered", r"was not delivered",
                     r"delivery (to the following|has failed|failed)", r"permanent (fatal )?error",
                     r"n'a (pas )?pu [eê]tre (remis|distribu|d[ée]livr|transmis)", r"undeliverable",
                     r"unable to deliver", r"failed permanently", r"returned to sender",
                     r"message (was )?not delivered", r"not delivered to")


def _matches(rule: str, status: str) -> bool:
    head, _, tail = rule.partition(".")
    klass, _, rest = status.partition(".")
    return (head in ("x", klass)) and (not tail or rest == tail or rest.startswith(tail + "."))


def _status_rule(status: str) -> tuple[str, str] | None:
    if not status:
        return None
    return next(((rule, kind) for rule, kind in STATUS_KINDS if _matches(rule, status)), None)


def kind_of(status: str, reason: str, *, failed: bool) -> str:
    """The kind of one failure from its enhanced status code and its text. A specific code decides;
    a generic one (``5.0.0``, ``4.4.1``, none) leaves it to the words of ``reason``. ``failed``: a
    permanent failure was reported even if nothing says why."""
    if MAILBOX_FULL.search(reason) or (status and _matches("x.2.2", status)):
        return Kind.SOFT
    rule = _status_rule(status)
    if rule is not None and rule[0] not in ("4", "5"):
        return rule[1]
    temporary = status.startswith("4.") or (not status and dsn.basic_code_in(reason).startswith("4"))
    if REFUSED.search(reason):
        return Kind.POLICY
    if UNKNOWN_ADDRESS.search(reason):
        return Kind.SOFT if temporary else Kind.HARD
    if rule is not None or temporary or failed or dsn.basic_code_in(reason).startswith("5"):
        return Kind.SOFT
    return Kind.UNKNOWN


def classify_reply(reply: str) -> Classification:
    """A synchronous SMTP reply to one recipient (``550 5.1.1 <x@y>: user unknown``)."""
    status = dsn.status_in(reply)
    code = dsn.basic_code_in(reply) or reply.strip()[:3]
    kind = kind_of(status, reply, failed=code.startswith("5"))
    return Classification(kind, status, (), " ".join(reply.split())[:1000], final=not code.startswith("4"))


def _from_reports(reports: list[dsn.Report], text: str) -> Classification | None:
    failing = [r for r in reports if r.action.startswith(("fail", "error", "delayed"))]
    if not failing:
        return None
    primary = next((r for r in failing if not r.action.startswith("delayed")), failing[0])
    status = primary.status
    detail = dsn.status_in(primary.diagnostic)
    if detail and (not status or (status.endswith(".0.0") and status[0] == detail[0])):
        status = detail  # "Status: 5.0.0" with "Diagnostic-Code: smtp; 550 5.1.1 …"
    final = not primary.action.startswith("delayed")
    reason = primary.diagnostic or text
    kind = kind_of(status, reason, failed=final)
    if not final and kind == Kind.HARD:
        kind = Kind.SOFT  # still being retried: nothing is known for sure yet
    recipients = tuple(dict.fromkeys(r.recipient for r in failing if r.recipient))
    return Classification(kind, status, recipients, " ".join(reason.split())[:1000], final)


def _detected(message: Message) -> tuple[set[str], set[str]]:
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a heuristic detector tripped over a malformed message
        log.debug("flufl.bounce failed on a message", exc_info=True)
        return set(), set()
    def text(items: set[bytes]) -> set[str]:
        return {item.decode("ascii", "replace").lower() for item in items if item and b"@" in item}
    return text(temporary), text(permanent)


def _looks_like_bounce(message: Message) -> bool:
    sender = dsn.header_text(message, "From")
    name_or_address = sender.split("<")[-1] if "<" in sender else sender
    subject = dsn.header_text(message, "Subject")
    return bool(message.get("X-Failed-Recipients") or BOUNCE_SENDER.match(name_or_address.strip(' "'))
                or BOUNCE_SENDER.match(sender.strip(' "')) or BOUNCE_SUBJECT.search(subject))


def is_auto_reply(message: Message) -> bool:
    """RFC 3834 ``Auto-Submitted: auto-replied``, the de-facto vacation headers, or such a subject."""
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto.startswith("auto-replied") or auto.startswith("auto-generated"):
        return True
    if any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Vacation", "X-Autoresponder")):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(AUTO_SUBJECT.search(dsn.header_text(message, "Subject")))


def _from_text(message: Message, text: str) -> Classification | None:
    temporary, permanent = _detected(message)
    named = dsn.header_addresses(message, "X-Failed-Recipients")
    recipients = tuple(dict.fromkeys([*named, *sorted(permanent), *sorted(temporary - permanent)]))
    if not recipients:
        recipients = tuple(dsn.addresses_in(text, exclude=dsn.own_addresses(message)))
    status = dsn.status_in(text)
    failed = bool(permanent or named or FAILURE_WORDS.search(text))
    if not (recipients or failed or status or dsn.basic_code_in(text)):
        return None
    kind = kind_of(status, text, failed=failed)
    if kind == Kind.UNKNOWN:
        return None
    if temporary and not permanent and not named and kind == Kind.HARD:
        kind = Kind.SOFT
    line = next((ln.strip() for ln in text.splitlines() if status and status in ln), "") or _reason_line(text)
    # A failure is final unless only temporary ones were seen (a 4.x.x code, or flufl's "delayed" detectors).
    temporary_only = status.startswith("4.") or (bool(temporary) and not (permanent or named))
    return Classification(kind, status, recipients, line[:1000], final=not temporary_only)


def _reason_line(text: str) -> str:
    for pattern in (MAILBOX_FULL, REFUSED, UNKNOWN_ADDRESS):
        found = pattern.search(text)
        if found:
            start = text.rfind("\n", 0, found.start()) + 1
            end = text.find("\n", found.end())
            return " ".join(text[start: end if end >= 0 else None].split())
    return ""


def is_read_receipt(message: Message) -> bool:
    """An RFC 8098 message disposition notification (a read receipt): not a bounce, not an absence."""
    return (message.get_content_type() == "multipart/report"
            and str(message.get_param("report-type", "")).lower() == "disposition-notification")


def is_list_notice(message: Message) -> bool:
    """A list server's automatic notice (its own address, or its headers)."""
    sender = " ".join(dsn.header_addresses(message, "From") + dsn.header_addresses(message, "Sender"))
    return bool(LIST_SERVER.search(sender) or any(name.lower().startswith(("x-sympa-", "x-mailman-"))
                                                  for name in message))


def classify_message(message: Message) -> Classification:
    if arf.is_feedback_report(message):  # before the DSN reader: a complaint names no failed recipient
        return Classification(Kind.COMPLAINT, "", (), arf.read(message).feedback_type)
    text = dsn.human_text(message)
    from_reports = _from_reports(dsn.reports(message), text)
    if from_reports is not None:
        return from_reports
    if is_read_receipt(message):
        return Classification(Kind.UNKNOWN, "", ())
    bounce_like = _looks_like_bounce(message)
    if not bounce_like and is_auto_reply(message):
        if is_list_notice(message):
            return Classification(Kind.UNKNOWN, "", (), dsn.header_text(message, "Subject")[:200])
        return Classification(Kind.AUTO_REPLY, "", (), dsn.header_text(message, "Subject")[:200])
    found = _from_text(message, text) if bounce_like or not is_auto_reply(message) else None
    return found or Classification(Kind.UNKNOWN, "", ())


def classify(data: bytes) -> Classification:
    """What a returned message is (the engine and ``palanquee bounces classify`` both call this)."""
    try:
        return classify_message(dsn.parse(data))
    except Exception:  # never let one strange message stop the intake: the owner reads it instead
        log.exception("could not classify a returned message")
        return Classification(Kind.UNKNOWN, "", ())
