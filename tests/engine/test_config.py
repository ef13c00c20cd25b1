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


@pytest.mark.parametrize("listen, url", [
    ("127.0.0.1:5401", "http://127.0.0.1:5401"), ("0.0.0.0:8000", "http://127.0.0.1:8000"),
    ("[::1]:5000", "http://[::1]:5000"), ("localhost:80", "http://localhost:80"),
])
def test_the_base_url_follows_the_listen_address_unless_set(tmp_path, listen, url):
    assert load_settings(env(tmp_path, PALANQUEE_WEB_LISTEN=listen)).base_url == url
    chosen = env(tmp_path, PALANQUEE_WEB_LISTEN=listen, PALANQUEE_BASE_URL="https://listes.example.fr/")
    assert load_settings(chosen).base_url == "https://listes.example.fr"


def test_mail_from_is_one_bare_address(tmp_path):
    assert load_settings(env(tmp_path, PALANQUEE_MAIL_FROM="listes@example.fr")).mail_from == "listes@example.fr"
    for bad in ("Listes <listes@example.fr>", "a@b, c@d", "listes", "x@y\nBcc: z@w"):
        with pytest.raises(ConfigError, match="PALANQUEE_MAIL_FROM: expected an e-mail address"):
            load_settings(env(tmp_path, PALANQUEE_MAIL_FROM=bad))


def test_config_works_before_the_first_start_in_the_readme_notation(tmp_path):
    from click.testing import CliRunner

    from engine.commands import config_command

    environ = {"PALANQUEE_INSTANCE": str(tmp_path / "instance"), "PALANQUEE_PROPAGATION_DELAY": "72h",
               "PALANQUEE_WEB_LISTEN": "127.0.0.1:5401"}
    result = CliRunner().invoke(config_command, [], env=environ)
    assert result.exit_code == 0, result.output
    shown = {line.split()[0]: line.split(None, 1)[1] for line in result.output.splitlines()
             if line.startswith("PALANQUEE_")}
    assert shown["PALANQUEE_SECRET_KEY"].startswith("MISSING")
    assert shown["PALANQUEE_WEB_LISTEN"] == "127.0.0.1:5401   (environment)"
    assert shown["PALANQUEE_BASE_URL"].startswith("http://127.0.0.1:5401 ")
    assert shown["PALANQUEE_LMTP_LISTEN"] == "off" and shown["PALANQUEE_RETRY_LIFETIME"] == "5d"
    assert shown["PALANQUEE_PROPAGATION_DELAY"] == "72h   (environment)"
    assert shown["PALANQUEE_SEASON_START"] == "09-15" and shown["PALANQUEE_SECURE_COOKIES"] == "0"
    assert "missing or invalid: PALANQUEE_SECRET_KEY" in result.output
    assert not (tmp_path / "instance").exists(), "showing the settings creates nothing"


def test_config_names_every_wrong_value_and_keeps_the_secret_secret(tmp_path):
    from engine.settings_report import format_duration, report

    rows = {row.variable: row for row in report({
        "PALANQUEE_INSTANCE": str(tmp_path), "PALANQUEE_SMTP_LISTEN": "2525", "PALANQUEE_RETRY_MAX": "soon",
        "PALANQUEE_SECRET_KEY": "s" * 32, "PALANQUEE_LMTP_LISTEN": "[::1]:24"})}
    assert rows["PALANQUEE_SMTP_LISTEN"].value == rows["PALANQUEE_RETRY_MAX"].value == "INVALID"
    assert "expected host:port" in rows["PALANQUEE_SMTP_LISTEN"].note
    assert rows["PALANQUEE_SECRET_KEY"].value == "(set)" and "s" * 32 not in str(rows)
    assert rows["PALANQUEE_LMTP_LISTEN"].value == "[::1]:24" and rows["PALANQUEE_RETRY_FIRST"].value == "5m"
    assert [format_duration(timedelta(seconds=s)) for s in (0, 90, 900, 3 * 86400)] == ["0", "90s", "15m", "3d"]


def test_notices_come_from_mail_from_then_the_admin_then_noreply(tmp_path):
    from engine import demo
    from engine.notices import sender_address

    assert sender_address(load_settings(env(tmp_path), defaults=demo.SETTING_DEFAULTS)) == \
        f"noreply@{demo.LIST_DOMAIN}"
    chosen = env(tmp_path, PALANQUEE_MAIL_FROM="listes@ffessm.fr", PALANQUEE_ADMIN_EMAIL="admin@ffessm.fr")
    assert sender_address(load_settings(chosen, defaults=demo.SETTING_DEFAULTS)) == "listes@ffessm.fr"
    assert sender_address(load_settings(env(tmp_path, PALANQUEE_ADMIN_EMAIL="admin@ffessm.fr"))) == "admin@ffessm.fr"
    assert sender_address(load_settings(env(tmp_path, PALANQUEE_BASE_URL="https://listes.ffessm.fr"))) == \
        "noreply@listes.ffessm.fr"
