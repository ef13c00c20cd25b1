"""The production-shape tests reuse the engine's fixtures: a recording sink, the real engine, a small federation."""

from tests.engine.conftest import engine_settings, federation, sink, start_engine  # noqa: F401
