"""The engine's one DNS resolver: every lookup (DMARC, SPF, DKIM keys, doctor) goes through ``current()``.

Production uses dnspython with short timeouts; tests install a ``StaticResolver`` with ``use()`` so
that no test ever reaches the network. Answers are plain strings (TXT strings joined, ``"10 mx.host"``
for MX) with the answer's TTL, which callers use to cache (DMARC policies are cached that long).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class TemporaryDnsError(Exception):
    """A lookup that may succeed later: timeout, SERVFAIL, no reachable server."""


@dataclass(frozen=True)
class Answer:
    records: tuple[str, ...]  # empty: the name or the type does not exist
    ttl: int


NEGATIVE_TTL = 300  # caching of "no such record" when the server gives no SOA minimum


class Resolver(Protocol):
    def lookup(self, name: str, rdtype: str) -> Answer:
        """Records of ``rdtype`` (TXT, MX, A, AAAA, PTR) at ``name``; raises TemporaryDnsError."""
        ...


class DnsPythonResolver:
    """Real DNS through dnspython (the system's resolv.conf), bounded by ``lifetime`` seconds."""

    def __init__(self, lifetime: float = 5.0) -> None:
        import dns.resolver

        self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = lifetime

    def lookup(self, name: str, rdtype: str) -> Answer:
        import dns.exception
        import dns.resolver

        try:
            answer = self._resolver.resolve(name.rstrip(".") + ".", rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Answer((), NEGATIVE_TTL)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            raise TemporaryDnsError(f"{name} {rdtype}: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise TemporaryDnsError(f"{name} {rdtype}: {exc}") from exc
        ttl = int(answer.rrset.ttl) if answer.rrset is not None else NEGATIVE_TTL
        return Answer(tuple(_text(rdtype, rdata) for rdata in answer), ttl)


def _text(rdtype: str, rdata: Any) -> str:
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}"
    if rdtype == "PTR":
        return str(rdata.target.to_text(omit_final_dot=True))
    return str(rdata.to_text())


class StaticResolver:
    """Answers from a mapping ``{(name, type): [records]}`` (tests, and ``doctor --records FILE``).

    A value that is an exception instance is raised instead (a timeout on purpose). Names are
    compared case-insensitively without the final dot. ``queries`` records every lookup made.
    """

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str] | Exception] | None = None,
                 ttl: int = 3600) -> None:
        self.records: dict[tuple[str, str], Sequence[str] | Exception] = {}
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []
        for (name, rdtype), value in (records or {}).items():
            self.add(name, rdtype, value)

    def add(self, name: str, rdtype: str, value: Sequence[str] | Exception | str) -> None:
        key = (name.lower().rstrip("."), rdtype.upper())
        self.records[key] = [value] if isinstance(value, str) else value

    def lookup(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype.upper())
        self.queries.append(key)
        value = self.records.get(key, ())
        if isinstance(value, Exception):
            raise TemporaryDnsError(str(value))
        return Answer(tuple(value), self.ttl if value else NEGATIVE_TTL)


_current: Resolver | None = None


def current() -> Resolver:
    """The resolver every lookup of the engine uses (dnspython unless ``use()`` replaced it)."""
    global _current
    if _current is None:
        _current = DnsPythonResolver()
    return _current


def use(resolver: Resolver | None) -> Resolver | None:
    """Install ``resolver`` for the whole engine (None: back to dnspython); returns the previous one."""
    global _current
    previous, _current = _current, resolver
    from engine.posting import dmarc  # a new resolver must not see the old one's cached policies

    dmarc.clear_cache()
    return previous


def configure(dns_resolver: str) -> None:
    """Apply PALANQUEE_DNS_RESOLVER: ``none`` installs a resolver that knows no record and never uses the
    network; ``system`` keeps the resolver in place (dnspython, or one a test installed)."""
    if dns_resolver == "none":
        use(StaticResolver())


def txt(name: str) -> list[str]:
    """The TXT strings at ``name`` (empty when none); raises TemporaryDnsError."""
    return list(current().lookup(name, "TXT").records)


def dkim_dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
    """dkimpy's ``dnsfunc`` signature over the engine's resolver (first TXT record, or empty)."""
    text = name.decode("ascii") if isinstance(name, bytes) else name
    try:
        records = txt(text)
    except TemporaryDnsError:
        return b""
    return records[0].encode("utf-8") if records else b""


def pyspf() -> Any:
    """pyspf, its DNS hook pointed at the engine's resolver. (Its source has invalid escape sequences,
    a DeprecationWarning at compile time that must not stop the engine, nor tests where warnings are errors.)"""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        import spf  # type: ignore[import-untyped]
    spf.DNSLookup = spf_lookup
    return spf


def spf_lookup(name: str, qtype: str, strict: Any = True, timeout: Any = 20) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's ``DNSLookup`` signature over the engine's resolver."""
    spf = pyspf()

    try:
        answer = current().lookup(name, qtype)
    except TemporaryDnsError as exc:
        raise spf.TempError(f"DNS {exc}") from exc
    found: list[tuple[tuple[str, str], Any]] = []
    for record in answer.records:
        if qtype in ("TXT", "SPF"):
            found.append(((name, qtype), [record.encode("utf-8")]))
        elif qtype == "MX":
            preference, _, host = record.partition(" ")
            found.append(((name, qtype), (int(preference), host)))
        else:
            found.append(((name, qtype), record))
    return found
