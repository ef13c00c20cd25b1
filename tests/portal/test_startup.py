"""Start-up: the CLI upgrades the schema, and the portal refuses a database that is behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine import db as engine_db
from portal import create_app


def run_cli(tmp_path, *args, **env):
    import os

    environment = {**os.environ, "PALANQUEE_INSTANCE": str(tmp_path / "instance"),
                   "PALANQUEE_SECRET_KEY": "k" * 32, **env}
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True,
                          env=environment, timeout=120)


def test_portal_refuses_a_database_that_is_behind(settings, empty_db_url):
    import dataclasses

    behind = dataclasses.replace(settings, database_url=empty_db_url)
    with pytest.raises(engine_db.SchemaBehindError, match="run `palanquee db upgrade`"):
        create_app(behind)


def test_db_upgrade_then_the_portal_starts(tmp_path):
    result = run_cli(tmp_path, "db", "status")
    assert result.returncode == 0 and "PENDING  0001_directory" in result.stdout
    result = run_cli(tmp_path, "demo-data", "--members", "20")
    assert result.returncode == 2
    assert result.stderr.startswith("palanquee: the database is behind (")
    assert "0001_directory" in result.stderr and result.stderr.strip().endswith("run `palanquee db upgrade`")
    result = run_cli(tmp_path, "db", "upgrade")
    assert result.returncode == 0 and "applied: 0001_directory" in result.stdout
    assert "up to date" in run_cli(tmp_path, "db", "upgrade").stdout
    result = run_cli(tmp_path, "demo-data", "--members", "20")
    assert result.returncode == 0, result.stderr
    assert "A-13-000001 / plongee-demo" in result.stdout


def test_a_wrong_setting_stops_the_cli_with_one_line(tmp_path):
    result = run_cli(tmp_path, "db", "upgrade", PALANQUEE_WEB_LISTEN="localhost")
    assert result.returncode == 2
    assert result.stderr.strip() == "palanquee: PALANQUEE_WEB_LISTEN: expected host:port, for example " \
                                    "127.0.0.1:2525, got 'localhost'"


def test_the_app_serves_its_pages(settings, db):
    client = create_app(settings).test_client()
    assert client.get("/healthz").get_json()["database"] == "ok"  # 503 while no engine runs (tests/production)
    assert "Bienvenue" in client.get("/").get_data(as_text=True)
