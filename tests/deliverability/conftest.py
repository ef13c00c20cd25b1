"""Fixtures for the deliverability tests: the real engine and sink of tests/engine, a published DKIM key,
DNS answered by the test's resolver, and helpers to sign inbound posts as an author's provider would."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import click
import dkim
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.config import Settings
from engine.posting import keys
from engine.resolver import StaticResolver
from tests.engine.conftest import engine_settings, federation, sink, start_engine  # noqa: F401 (fixtures)

LIST_DOMAIN = "listes.example.fr"


def published(dns: StaticResolver, key: keys.DkimKey) -> keys.DkimKey:
    dns.add(key.dns_name(), "TXT", key.txt_record())
    return key


@pytest.fixture
def list_key(db, dns: StaticResolver) -> keys.DkimKey:  # type: ignore[no-untyped-def]
    """An RSA-2048 key of the list domain, made as `palanquee dkim generate` makes it, published in DNS."""
    return published(dns, keys.generate(LIST_DOMAIN))


@pytest.fixture
def cli_env(db_url: str, db, settings: Settings) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Environment for running a `palanquee` command in-process with ``invoke``."""
    from engine import db as engine_db

    yield {"PALANQUEE_DATABASE_URL": db_url, "PALANQUEE_SECRET_KEY": settings.secret_key}
    engine_db.bind(db)


def invoke(command: click.Command, args: list[str], env: dict[str, str]) -> Result:
    """Run a command in-process; then close the connection of the database object it bound the models to,
    and bind them back to the test's."""
    from engine import db as engine_db
    from tests import factories

    previous = engine_db.database.obj
    try:
        return CliRunner().invoke(command, args, env=env)
    finally:
        if engine_db.database.obj is not previous:
            factories.close_bound_connection()
            engine_db.bind(previous)


@pytest.fixture
def verifying_settings(engine_settings: Settings) -> Settings:  # noqa: F811
    """The engine checks senders itself (the production default)."""
    return dataclasses.replace(engine_settings, inbound_authentication="verify")


def verifies(data: bytes, index: int = 0) -> bool:
    """dkimpy's verdict on signature ``index`` of ``data``, keys from the test's DNS."""
    from engine import resolver

    try:
        return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=resolver.dkim_dnsfunc))
    except dkim.DKIMException:  # a body hash mismatch is raised rather than returned
        return False


class AuthorDomain:
    """An author's mail provider: a DKIM key published in the test DNS, signing posts as it would."""

    def __init__(self, dns: StaticResolver, domain: str, selector: str = "mail") -> None:
        self.domain, self.selector = domain, selector
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        dns.add(f"{selector}._domainkey.{domain}", "TXT",
                keys.txt_record(keys.Algorithm.RSA, self.key))

    def sign(self, data: bytes) -> bytes:
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
        signature = dkim.sign(data, self.selector.encode(), self.domain.encode(), pem,
                              include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        return bytes(signature) + data


@pytest.fixture
def author_domain(dns: StaticResolver) -> Callable[[str], AuthorDomain]:
    return lambda domain: AuthorDomain(dns, domain)
