"""Fault injection (issue 16): the engine's fixtures, and a zygote that forks engine processes cheaply."""

from collections.abc import Iterator

import pytest

from tests.engine.conftest import engine_settings, federation, sink, start_engine  # noqa: F401
from tests.support.zygote import Zygote


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    forker = Zygote()
    yield forker
    forker.close()
