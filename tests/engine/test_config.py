"""Configuration: defaults, environment over TOML, one clear line for a wrong value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.config import SPECS, ConfigError, load_settings, parse_duration, settings_table_markdown


def env(tmp_path, **values):
    return {"PALANQUEE_INSTANCE": str(tmp_path), "PALANQUEE_SECRET_KEY": "s" * 32, **values}


def test_defaults(tmp_path):
    settings = load_settings(env(tmp_path))
    assert settings.database_url == f"sqlite:///{tmp_path / 'palanquee.sqlite3'}"
    assert settings.base_url == "http://127.0.0.1:5000"
    assert settings.smtp_listen == ("127.0.0.1", 2525)
    assert settings.lmtp_listen is None
    assert settings.smarthost == ""
    assert settings.propagation_delay == timedelta(days=3)


@pytest.mark.parametrize("raw, expected", [
    ("0", timedelta(0)), ("15m", timedelta(minutes=15)), ("72h", timedelta(hours=72)),
    ("3d", timedelta(days=3)), ("90", timedelta(seconds=90)),
])
def test_durations(raw, expected):
    assert parse_duration(raw) == expected


@pytest.mark.parametrize("variable, value, expected", [
    ("PALANQUEE_PROPAGATION_DELAY", "soon", "expected a duration such as 0, 15m, 72h or 3d, got 'soon'"),
    ("PALANQUEE_SMTP_LISTEN", "2525", "expected host:port"),
    ("PALANQUEE_BASE_URL", "listes.example.fr", "expected an http:// or https:// URL"),
    ("PALANQUEE_DATABASE_URL", "mysql://x", "expected sqlite:///PATH or postgresql://"),
    ("PALANQUEE_SMARTHOST", "mail.example.fr", "expected empty (local capture) or smtp://"),
    ("PALANQUEE_TIMEZONE", "Mars/Olympus", "expected an IANA time zone"),
    ("PALANQUEE_SEASON_START", "15-09", "expected a month and day MM-DD"),
    ("PALANQUEE_MAX_MESSAGE_SIZE", "-3", "expected a positive whole number"),
])
def test_a_wrong_value_names_the_variable_and_what_is_expected(tmp_path, variable, value, expected):
    with pytest.raises(ConfigError) as info:
        load_settings(env(tmp_path, **{variable: value}))
    message = str(info.value)
    assert message.startswith(f"{variable}: ") and expected in message
    assert "\n" not in message


def test_production_refuses_to_start_without_a_secret_but_the_demo_keeps_one(tmp_path):
    with pytest.raises(ConfigError, match="PALANQUEE_SECRET_KEY: required"):
        load_settings({"PALANQUEE_INSTANCE": str(tmp_path)})
    first = load_settings({"PALANQUEE_INSTANCE": str(tmp_path)}, generate_secret=True)
    assert len(first.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    again = load_settings({"PALANQUEE_INSTANCE": str(tmp_path)})  # kept in the instance folder
    assert again.secret_key == first.secret_key
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings({"PALANQUEE_INSTANCE": str(tmp_path), "PALANQUEE_SECRET_KEY": "short"})


def test_toml_file_and_environment_precedence(tmp_path):
    config = tmp_path / "palanquee.toml"
    config.write_text('propagation_delay = "15m"\nbase_url = "https://listes.example.fr"\nmax_message_size = 1000\n')
    settings = load_settings(env(tmp_path, PALANQUEE_CONFIG=str(config), PALANQUEE_BASE_URL="https://other.fr"))
    assert settings.propagation_delay == timedelta(minutes=15)
    assert settings.base_url == "https://other.fr"  # the environment wins
    assert settings.max_message_size == 1000


def test_toml_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("propagation_delay = \n")
    with pytest.raises(ConfigError, match="PALANQUEE_CONFIG: .* is not valid TOML"):
        load_settings(env(tmp_path, PALANQUEE_CONFIG=str(bad)))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings(env(tmp_path, PALANQUEE_CONFIG=str(unknown)))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(env(tmp_path, PALANQUEE_CONFIG=str(tmp_path / "missing.toml")))


def test_readme_lists_every_variable():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [spec.variable for spec in SPECS if f"`{spec.variable}`" not in readme]
    assert not missing, f"README lacks {missing}: paste `palanquee config --markdown`"
    assert settings_table_markdown().count("\n") == len(SPECS) + 1
