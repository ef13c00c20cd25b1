"""Settings of a Palanquée installation, read once from the environment and an optional TOML file.

Every setting is declared once in ``SPECS`` (name, parser, default, meaning); the README's table
is generated from it (``palanquee config --markdown``). A bad value raises ``ConfigError`` whose
message is one line naming the variable and what is expected.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PREFIX = "PALANQUEE_"


class ConfigError(Exception):
    """A setting has a wrong value; the message names the variable and what is expected."""


# --- parsers: each takes the raw string and returns the value or raises ValueError(expected) ---

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> timedelta:
    """``0``, ``90s``, ``15m``, ``72h``, ``3d`` (a bare number is seconds)."""
    match = _DURATION.match(str(raw))
    if not match:
        raise ValueError("a duration such as 0, 15m, 72h or 3d")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_hostport(raw: str) -> tuple[str, int]:
    """``host:port`` with a port up to 65535 (``[::1]:25`` for IPv6); port 0: any free port, taken at
    start-up (the demo and the engine print the one they got)."""
    host, sep, port = str(raw).strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("host:port, for example 127.0.0.1:2525")
    return host, int(port)


def parse_optional_hostport(raw: str) -> tuple[str, int] | None:
    """Empty or ``off`` disables the listener, otherwise ``host:port``."""
    if str(raw).strip().lower() in ("", "off", "no", "0"):
        return None
    return parse_hostport(raw)


def parse_url(raw: str) -> str:
    parts = urlsplit(str(raw).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("an http:// or https:// URL, for example https://listes.example.fr")
    return str(raw).strip().rstrip("/")


def parse_database_url(raw: str) -> str:
    value = str(raw).strip()
    if not re.match(r"^(sqlite:///.+|postgres(ql)?://.+)$", value):
        raise ValueError("sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME")
    return value


def parse_smarthost(raw: str) -> str:
    value = str(raw).strip()
    if value and not re.match(r"^smtps?://([^@/]+@)?[^:/@]+(:\d+)?/?(\?.*)?$", value):
        raise ValueError("empty (local capture) or smtp://[user:password@]host:port[?starttls=1]")
    return value


def parse_address(raw: str) -> str:
    """Empty, or one bare address ``local@domain`` (no display name, no spaces)."""
    value = str(raw).strip()
    if value and not re.match(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$", value):
        raise ValueError("an e-mail address such as listes@example.fr")
    return value


def parse_bool(raw: str) -> bool:
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("a boolean: 1/0, true/false, yes/no, on/off")


def parse_positive_int(raw: str) -> int:
    value = str(raw).strip()
    if not value.isdigit() or int(value) <= 0:
        raise ValueError("a positive whole number")
    return int(value)


def parse_month_day(raw: str) -> tuple[int, int]:
    match = re.match(r"^(\d\d)-(\d\d)$", str(raw).strip())
    if not match or not (1 <= int(match.group(1)) <= 12 and 1 <= int(match.group(2)) <= 31):
        raise ValueError("a month and day MM-DD, for example 09-15")
    return int(match.group(1)), int(match.group(2))


def parse_timezone(raw: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(raw).strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("an IANA time zone such as Europe/Paris") from exc


def parse_language(raw: str) -> str:
    value = str(raw).strip().lower()
    if value not in ("fr", "en"):
        raise ValueError("fr or en")
    return value


def parse_text(raw: str) -> str:
    return str(raw).strip()


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser accepting one of ``allowed`` (case-insensitive)."""
    def parse(raw: str) -> str:
        value = str(raw).strip().lower()
        if value not in allowed:
            raise ValueError(" or ".join(allowed))
        return value
    return parse


def parse_ip_list(raw: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 addresses (empty: none)."""
    import ipaddress

    values = tuple(part.strip() for part in str(raw).split(",") if part.strip())
    try:
        return tuple(str(ipaddress.ip_address(value)) for value in values)
    except ValueError as exc:
        raise ValueError("comma-separated IP addresses, for example 192.0.2.10,2001:db8::10") from exc


@dataclass(frozen=True)
class Spec:
    """One setting: ``PALANQUEE_<NAME>``, its parser, its default (raw text) and its meaning."""

    name: str
    parse: Callable[[str], Any]
    default: str | None
    help: str

    @property
    def variable(self) -> str:
        return PREFIX + self.name.upper()


SPECS: tuple[Spec, ...] = (
    Spec("instance", parse_text, "./instance",
         "folder for the SQLite file, the demo's secret key and captured mail"),
    Spec("database_url", parse_database_url, None,
         "`sqlite:///PATH` or `postgresql://…`; default: `palanquee.sqlite3` in the instance folder"),
    Spec("secret_key", parse_text, None,
         "signs sessions and tokens; `palanquee demo` generates one in the instance folder, "
         "every other command refuses to start without one"),
    Spec("base_url", parse_url, None,
         "the public address used in links in mail; default: `http://` and `PALANQUEE_WEB_LISTEN` "
         "(a wildcard listen address is read as 127.0.0.1)"),
    Spec("web_listen", parse_hostport, "127.0.0.1:5000",
         "where `web` and `demo` serve the portal (`demo` takes any free port for port 0, and prints it)"),
    Spec("web_workers", parse_positive_int, "3",
         "processes `web` and `demo` serve the portal with (gunicorn sync workers: one request at a time each)"),
    Spec("web_timeout", parse_duration, "30s",
         "longest a request may take (reading its body, answering); a worker stuck longer is replaced"),
    Spec("web_header_timeout", parse_duration, "10s",
         "a connection that has not sent its whole request head by then is closed (no worker waits for it)"),
    Spec("max_request_size", parse_positive_int, "1048576",
         "largest request body the portal reads, in bytes (answered 413 before reading it)"),
    Spec("max_upload_size", parse_positive_int, "20971520",
         "largest body of the member import upload, in bytes (larger files: `palanquee import-members`)"),
    Spec("smtp_listen", parse_hostport, "127.0.0.1:2525", "the engine's SMTP intake"),
    Spec("lmtp_listen", parse_optional_hostport, "off",
         "the engine's LMTP intake, for an MTA in front (`off` or host:port)"),
    Spec("socketmap_listen", parse_optional_hostport, "off",
         "a Postfix socketmap table (`off` or host:port) answering at RCPT time which list addresses exist, "
         "for `relay_recipient_maps = socketmap:inet:HOST:PORT:recipients` (no backscatter)"),
    Spec("smarthost", parse_smarthost, "",
         "where outgoing mail goes: empty for local capture in the instance folder, or "
         "`smtp://[user:pass@]host:port[?starttls=1][&cafile=PATH]` or `smtps://…` (TLS from the start; "
         "AUTH PLAIN with user:pass; cafile: a private CA for the relay's certificate)"),
    Spec("propagation_delay", parse_duration, "3d",
         "from the confirmation of a new address to its use by the lists (`0`, `15m`, `72h`, `3d`)"),
    Spec("email_change_max_age", parse_duration, "48h",
         "how long the confirmation link of a new address stays valid"),
    Spec("password_reset_max_age", parse_duration, "2h",
         "how long a password reset or account activation link stays valid"),
    Spec("max_message_size", parse_positive_int, "26214400",
         "largest message the intake accepts, in bytes (answered with 552 at DATA)"),
    Spec("max_recipients", parse_positive_int, "100",
         "recipients the intake accepts in one SMTP or LMTP transaction; past it RCPT is answered 452 "
         "(RFC 5321 §4.5.3.1.8: at least 100)"),
    Spec("season_start", parse_month_day, "09-15",
         "first day (MM-DD) of the licence season; a season is named by the year it starts in"),
    Spec("timezone", parse_timezone, "Europe/Paris", "time zone of dates shown to people"),
    Spec("default_language", parse_language, "fr", "language of pages and mail when none is asked for"),
    Spec("admin_email", parse_text, "",
         "the platform administration's address: told when a list is created with “notify the administrator” "
         "(unset: the administrators of the structure above the list's)"),
    Spec("mail_from", parse_address, "",
         "address the product's own mail (confirmations, notices, moderation requests) comes from; default: "
         "`PALANQUEE_ADMIN_EMAIL`, else `noreply@` the host of `PALANQUEE_BASE_URL`; "
         "`palanquee demo`: `noreply@` its list domain"),
    Spec("secure_cookies", parse_bool, "0",
         "send cookies with the Secure flag (turn on behind HTTPS)"),
    Spec("session_max_age", parse_duration, "12h",
         "a login without “rester connecté(e)” ends after this long, on the server (logging out ends it at once)"),
    Spec("remember_max_age", parse_duration, "30d",
         "a “rester connecté(e)” login ends after this long, on the server"),
    Spec("delivery_connections", parse_positive_int, "8",
         "SMTP connections each engine keeps open to the smarthost (pipelined, reused)"),
    Spec("delivery_batch", parse_positive_int, "500", "deliveries a worker claims at a time"),
    Spec("delivery_processes", parse_positive_int, "2",
         "processes `palanquee engine` delivers with (itself and helpers that share the claims)"),
    Spec("intake_processes", parse_positive_int, "1",
         "processes `palanquee engine` serves its SMTP/LMTP intake with (itself and intake workers accepting on "
         "the same listening sockets, each with its own database connection)"),
    Spec("delivery_lease", parse_duration, "5m",
         "how long a claim lasts; claims of a worker that died are taken back after it"),
    Spec("delivery_idle_check", parse_duration, "30s",
         "a connection to the smarthost left idle longer than this is checked (NOOP) before it is reused"),
    Spec("throttle_mx_lookup", parse_bool, "0",
         "look up the MX host of recipient domains so that a domain hosted by a large provider follows "
         "its throttling rule (needs DNS; turn on in production)"),
    Spec("retry_first", parse_duration, "5m", "first retry after a temporary failure (then doubled)"),
    Spec("retry_max", parse_duration, "1h", "longest wait between two retries"),
    Spec("retry_lifetime", parse_duration, "5d",
         "give up on a copy that still fails temporarily after this long (RFC 5321: 4–5 days)"),
    Spec("moderation_max_age", parse_duration, "14d", "how long approve/reject links in moderation requests work"),
    Spec("bounce_threshold", parse_positive_int, "5",
         "bounce score that stops list mail to an address (a list may set its own); a hard bounce counts 1, "
         "a soft one ½, once a day"),
    Spec("bounce_stale_after", parse_duration, "7d", "a bounce score with no new failure for this long starts again"),
    Spec("bounce_disabled_for", parse_duration, "365d",
         "how long a disabled address stays off the lists unless its member fixes it sooner"),
    Spec("dkim_signing", choice("engine", "smarthost"), "engine",
         "`engine`: every copy is DKIM-signed (and ARC-sealed where the list asks) with the list domain's key "
         "(`palanquee dkim generate`); `smarthost`: left to the relay (OpenDKIM, rspamd), see docs/deliverability.md"),
    Spec("inbound_authentication", choice("verify", "header", "off"), "verify",
         "how a post's sender is authenticated: `verify` (DKIM, SPF, DMARC checked by the engine), `header` (trust "
         "the Authentication-Results of `PALANQUEE_AUTHSERV_ID`, added by the MTA in front), `off` (trust From)"),
    Spec("authserv_id", parse_text, "",
         "authserv-id of the MTA in front whose Authentication-Results are trusted (RFC 8601); also names the "
         "engine in ARC-Authentication-Results (default: the list domain)"),
    Spec("dns_resolver", choice("system", "none"), "system",
         "`system`: DNS lookups (DMARC, SPF, DKIM keys, doctor) through the system's resolvers; `none`: no lookup "
         "ever leaves the machine and every name has no record (the demo's default)"),
    Spec("sending_ips", parse_ip_list, "",
         "public IP addresses list mail leaves from (comma-separated), which `palanquee doctor` expects in SPF"),
    Spec("heartbeat_max_age", parse_duration, "2m",
         "`/healthz` answers 503 when no engine process has written its heartbeat for this long (each writes "
         "it every 10 s)"),
    Spec("metrics_listen", parse_optional_hostport, "off",
         "where each engine serves Prometheus metrics at `/metrics` (`off` or host:port; a delivery helper "
         "takes the next port)"),
    Spec("log_format", choice("text", "json"), "text",
         "`text`: one readable line per event; `json`: one JSON object per line, with the message and delivery "
         "ids where known (docs/operations.md)"),
)

SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Settings:
    """The parsed settings. Build with ``load_settings``; tests may build one directly."""

    instance: Path
    database_url: str
    secret_key: str
    base_url: str
    web_listen: tuple[str, int]
    web_workers: int
    web_timeout: timedelta
    web_header_timeout: timedelta
    max_request_size: int
    max_upload_size: int
    smtp_listen: tuple[str, int]
    lmtp_listen: tuple[str, int] | None
    socketmap_listen: tuple[str, int] | None
    smarthost: str
    propagation_delay: timedelta
    email_change_max_age: timedelta
    password_reset_max_age: timedelta
    max_message_size: int
    max_recipients: int
    season_start: tuple[int, int]
    timezone: ZoneInfo
    default_language: str
    admin_email: str
    mail_from: str
    secure_cookies: bool
    session_max_age: timedelta
    remember_max_age: timedelta
    delivery_connections: int
    delivery_batch: int
    delivery_processes: int
    intake_processes: int
    delivery_lease: timedelta
    delivery_idle_check: timedelta
    throttle_mx_lookup: bool
    retry_first: timedelta
    retry_max: timedelta
    retry_lifetime: timedelta
    moderation_max_age: timedelta
    bounce_threshold: int
    bounce_stale_after: timedelta
    bounce_disabled_for: timedelta
    dkim_signing: str = "engine"
    inbound_authentication: str = "verify"
    authserv_id: str = ""
    dns_resolver: str = "system"
    sending_ips: tuple[str, ...] = ()
    heartbeat_max_age: timedelta = timedelta(minutes=2)
    metrics_listen: tuple[str, int] | None = None
    log_format: str = "text"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def capture_dir(self) -> Path:
        """Maildir where outgoing mail is captured when no smarthost is set."""
        return self.instance / "mail"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


def url_of_listen_address(listen: tuple[str, int]) -> str:
    """``http://host:port`` of the portal's listen address (a wildcard address reads as loopback)."""
    host, port = listen
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{PREFIX}CONFIG: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{PREFIX}CONFIG: {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(SPEC_BY_NAME))
    if unknown:
        raise ConfigError(f"{PREFIX}CONFIG: unknown setting {unknown[0]!r} in {path}")
    return {key: str(value) if not isinstance(value, str) else value for key, value in data.items()}


def _raw_values(environ: Mapping[str, str], overrides: Mapping[str, Any],
                defaults: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {spec.name: spec.default for spec in SPECS}
    raw.update(defaults or {})
    config_file = environ.get(PREFIX + "CONFIG")
    if config_file:
        raw.update(_read_toml(config_file))
    for spec in SPECS:
        if spec.variable in environ:
            raw[spec.name] = environ[spec.variable]
    raw.update({k: v for k, v in overrides.items() if k in SPEC_BY_NAME})
    return raw


def _secret_key(raw: Any, instance: Path, generate: bool, required: bool = True) -> str:
    """Environment or file first; the demo keeps a generated key in the instance folder. Without one
    and not ``required``: the empty string (``palanquee config`` shows what is missing)."""
    if raw:
        if len(str(raw)) < 16:
            raise ConfigError(f"{PREFIX}SECRET_KEY: expected at least 16 characters")
        return str(raw)
    key_file = instance / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    if not generate and not required:
        return ""
    if not generate:
        raise ConfigError(
            f"{PREFIX}SECRET_KEY: required (a long random string); "
            "`palanquee demo` generates one for a local trial"
        )
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    generate_secret: bool = False,
    require_secret: bool = True,
    defaults: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings: defaults < TOML file (``PALANQUEE_CONFIG``) < environment < overrides.

    ``overrides`` are already-parsed-or-raw values keyed by setting name (tests pass a mapping).
    ``generate_secret`` lets the demo create and keep a secret key in the instance folder;
    ``require_secret=False`` leaves it empty when there is none (commands that sign nothing).
    ``defaults`` replace the built-in defaults (raw text, keyed by name): the demo's own.
    """
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    raw = _raw_values(environ, overrides, defaults)
    values: dict[str, Any] = {}
    for spec in SPECS:
        value = raw[spec.name]
        if spec.name == "secret_key" or value is None or not isinstance(value, str):
            values[spec.name] = value
            continue
        try:
            values[spec.name] = spec.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{spec.variable}: expected {exc}, got {value!r}") from None
    instance = Path(values["instance"]).resolve()
    values["instance"] = instance
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{instance / 'palanquee.sqlite3'}"
    if not values["base_url"]:
        values["base_url"] = url_of_listen_address(values["web_listen"])
    values["secret_key"] = _secret_key(values["secret_key"], instance, generate_secret, require_secret)
    if values["inbound_authentication"] == "header" and not values["authserv_id"]:
        raise ConfigError(f"{PREFIX}AUTHSERV_ID: required when {PREFIX}INBOUND_AUTHENTICATION is header")
    extra = {k: v for k, v in overrides.items() if k not in SPEC_BY_NAME}
    return Settings(**values, extra=extra)


def settings_table_markdown() -> str:
    """The README's table of variables, generated from ``SPECS``."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in SPECS:
        default = f"`{spec.default}`" if spec.default not in (None, "") else "—"
        lines.append(f"| `{spec.variable}` | {default} | {spec.help} |")
    return "\n".join(lines)
