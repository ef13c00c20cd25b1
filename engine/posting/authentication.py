"""Who really sent a post: the inbound DKIM, SPF, DMARC and ARC results, read or verified at intake.

A From header proves nothing. With an MTA in front (Postfix with OpenDKIM/OpenDMARC, rspamd…), the
engine trusts the topmost Authentication-Results field (RFC 8601) bearing the configured authserv-id,
which that MTA must strip from incoming mail (RFC 8601 §5); otherwise the engine verifies itself:
dkimpy for each DKIM-Signature and the ARC chain, pyspf for the SMTP client, DMARC alignment by the
Public Suffix List (RFC 7489 §3.1). The results are kept with the message, for the posting rules and
for the ARC-Authentication-Results of each copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import Message

from engine import resolver
from engine.config import Settings
from engine.posting import dmarc

log = logging.getLogger("palanquee.authentication")


class Source:
    VERIFY = "verify"  # the engine verifies (SMTP straight to the engine)
    HEADER = "header"  # trust the Authentication-Results of PALANQUEE_AUTHSERV_ID (an MTA in front)
    OFF = "off"  # trust the From address (tests of other features, or a closed network)
    ALL = (VERIFY, HEADER, OFF)


@dataclass(frozen=True)
class Client:
    """The SMTP client of the inbound session (SPF checks its address, RFC 7208 §2.4)."""

    ip: str
    helo: str = ""


@dataclass(frozen=True)
class Outcome:
    authserv_id: str
    from_domain: str
    dkim: tuple[tuple[str, str], ...] = ()  # (result, d=) per signature
    spf: str = "none"
    spf_domain: str = ""
    dmarc: str = "none"
    arc: str = "none"

    @property
    def authenticated(self) -> bool:
        """DMARC passes, or (no DMARC verdict) a DKIM pass or SPF pass aligned with the From domain."""
        if self.dmarc == "pass":
            return True
        if not self.from_domain:
            return False
        return (any(result == "pass" and dmarc.aligned(d, self.from_domain) for result, d in self.dkim)
                or (self.spf == "pass" and dmarc.aligned(self.spf_domain, self.from_domain)))

    def header_value(self) -> str:
        """An Authentication-Results value (RFC 8601), folded: what ARC-Authentication-Results repeats."""
        results = [f"dkim={result} header.d={d}" for result, d in self.dkim] or ["dkim=none"]
        results.append(f"spf={self.spf}" + (f" smtp.mailfrom={self.spf_domain}" if self.spf_domain else ""))
        results.append(f"dmarc={self.dmarc}" + (f" header.from={self.from_domain}" if self.from_domain else ""))
        results.append(f"arc={self.arc}")
        return ";\r\n ".join([self.authserv_id, *results])


UNCHECKED = object()  # receive() computes the outcome itself when the intake did not


def check_post(settings: Settings, raw: bytes, envelope_sender: str, client: Client | None,
               list_domain: str) -> Outcome | None:
    """``check`` for a post as the intake received it. The intake runs it in a thread of its own: DNS
    lookups (SPF may make ten) must not stall the engine's database thread."""
    from email import policy
    from email.parser import BytesHeaderParser

    headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    return check(settings.inbound_authentication, settings.authserv_id or list_domain, raw, headers,
                 envelope_sender, client)


def check(source: str, authserv_id: str, raw: bytes, headers: Message, envelope_sender: str,
          client: Client | None) -> Outcome | None:
    """The post's authentication, from ``source``; None when checking is off."""
    _, author = dmarc.author_address(headers)
    from_domain = author.rpartition("@")[2].lower() if "@" in author else ""
    if source == Source.OFF:
        return None
    if source == Source.HEADER:
        return from_header(headers, authserv_id, from_domain)
    return verify(raw, envelope_sender, client, from_domain, authserv_id)


def from_header(headers: Message, authserv_id: str, from_domain: str) -> Outcome:
    """The topmost Authentication-Results of ``authserv_id``; nothing trusted found: all ``none``."""
    import authres  # type: ignore[import-untyped]

    for value in headers.get_all("Authentication-Results", []):
        try:
            parsed = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + str(value))
        except Exception:  # authres raises its own SyntaxError family on garbage: not ours, skip it
            continue
        if str(parsed.authserv_id).lower() != authserv_id.lower():
            continue
        found = {"dkim": [], "spf": [], "dmarc": [], "arc": []}  # type: dict[str, list[tuple[str, str]]]
        for result in parsed.results:
            where = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
            domain = where.get("header.d") or where.get("smtp.mailfrom", "").rpartition("@")[2] or where.get(
                "smtp.helo", "")
            found.setdefault(str(result.method).lower(), []).append((str(result.result).lower(), domain.lower()))
        spf = found["spf"][0] if found["spf"] else ("none", "")
        return Outcome(authserv_id, from_domain, tuple(found["dkim"]), spf[0], spf[1],
                       found["dmarc"][0][0] if found["dmarc"] else "none",
                       found["arc"][0][0] if found["arc"] else "none")
    return Outcome(authserv_id, from_domain)


def verify(raw: bytes, envelope_sender: str, client: Client | None, from_domain: str,
           authserv_id: str) -> Outcome:
    """DKIM (each signature), SPF (the client, the envelope domain) and ARC, verified here; DMARC from those."""
    dkim_results = _verify_dkim(raw)
    spf_result, spf_domain = _verify_spf(envelope_sender, client)
    arc_result = _verify_arc(raw)
    outcome = Outcome(authserv_id, from_domain, dkim_results, spf_result, spf_domain, "none", arc_result)
    return Outcome(**{**outcome.__dict__, "dmarc": _dmarc(outcome)})


def _verify_dkim(raw: bytes) -> tuple[tuple[str, str], ...]:
    import dkim  # type: ignore[import-untyped]

    results: list[tuple[str, str]] = []
    count = sum(1 for line in raw.split(b"\n\r\n", 1)[0].split(b"\n") if line.lower().startswith(b"dkim-signature:"))
    for index in range(count):
        checker = dkim.DKIM(raw, minkey=1024)
        try:
            good = checker.verify(idx=index, dnsfunc=resolver.dkim_dnsfunc)
        except dkim.DKIMException as exc:
            log.info("DKIM signature %d unusable: %s", index, exc)
            good = False
        domain = (checker.domain or b"").decode("ascii", "replace").lower()
        results.append(("pass" if good else "fail", domain))
    return tuple(results)


def _verify_spf(envelope_sender: str, client: Client | None) -> tuple[str, str]:
    spf = resolver.pyspf()
    if client is None or not client.ip:
        return "none", ""
    domain = envelope_sender.rpartition("@")[2].lower() if "@" in envelope_sender else client.helo.lower()
    try:
        result, _explanation = spf.check2(i=client.ip, s=envelope_sender or f"postmaster@{domain}",
                                          h=client.helo or domain, timeout=10)
    except Exception as exc:  # pyspf raises on malformed input; treat as no verdict
        log.info("SPF check failed for %s: %s", envelope_sender, exc)
        return "temperror", domain
    return str(result), domain


def _verify_arc(raw: bytes) -> str:
    import dkim

    if b"\narc-seal:" not in b"\n" + raw.split(b"\r\n\r\n", 1)[0].lower():
        return "none"
    try:
        validation, _results, _reason = dkim.arc_verify(raw, dnsfunc=resolver.dkim_dnsfunc)
    except Exception as exc:  # dkimpy raises on malformed chains
        log.info("ARC chain unusable: %s", exc)
        return "fail"
    return (validation or b"fail").decode("ascii").lower()


def _dmarc(outcome: Outcome) -> str:
    """RFC 7489 §4.2: pass when an aligned identifier passes; fail under a published policy; else none."""
    if not outcome.from_domain:
        return "none"
    policy = dmarc.lookup(outcome.from_domain)
    passes = (any(r == "pass" and dmarc.aligned(d, outcome.from_domain, policy.adkim) for r, d in outcome.dkim)
              or (outcome.spf == "pass" and dmarc.aligned(outcome.spf_domain, outcome.from_domain, policy.aspf)))
    if passes:
        return "pass"
    if policy.p == "temperror":
        return "temperror"
    return "fail" if policy.published else "none"
