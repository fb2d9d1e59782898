"""Settings come from `MVNE_*` variables; a bad or missing one stops the start with its name, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mvne.infra.settings import SettingsError, load_settings

MVNE = Path(sys.executable).with_name("mvne")

PRODUCTION = {
    "MVNE_MODE": "production",
    "MVNE_SECRET_KEY": "s" * 48,
    "MVNE_JWT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nnot checked here\n-----END PRIVATE KEY-----",
    "MVNE_SIM_KEY": "k" * 44,
    "MVNE_DATABASE_URL": "postgresql+psycopg://mvne@db.internal:5432/mvne",
    "MVNE_PLATFORM_DATABASE_URL": "postgresql+psycopg://mvne_platform@db.internal:5432/mvne",
    "MVNE_BROKER_URL": "redis://redis.internal:6379/0",
    "MVNE_CHARGING_URL": "redis://charging.internal:6379/0",
    "MVNE_STORAGE_URL": "s3://mvne-objects",
    "MVNE_SMDP_URL": "https://smdp.example.net/gsma/rsp2/es2plus",
    "MVNE_NETWORK_URL": "https://hlr.example.net/api",
    "MVNE_SMDP_CA_FILE": "smdp-ca.pem",
    "MVNE_SMDP_ALLOWED_SUBJECTS": "smdp.example.net",
    "MVNE_MAIL_URL": "smtp://mailer:pw@smtp.example.net:587",
}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MVNE_PORT", "abc"),
        ("MVNE_PORT", "70000"),
        ("MVNE_PORT", "0"),
        ("MVNE_MODE", "staging"),
        ("MVNE_DATABASE_URL", "mysql://x"),
        ("MVNE_BROKER_URL", "amqp://x"),
        ("MVNE_STORAGE_URL", "ftp://x"),
        ("MVNE_EMBEDDED_SIMULATORS", "maybe"),
        ("MVNE_JOB_MAX_RETRIES", "-1"),
        ("MVNE_LOG_FORMAT", "xml"),
        ("MVNE_SMDP_TRUSTED_PROXIES", "proxy.internal"),
        ("MVNE_MAIL_URL", "imap://mail.example.net"),
        ("MVNE_CHARGING_VALIDITY_S", "0"),
    ],
)
def test_a_malformed_variable_is_refused_with_its_name_and_the_bad_value(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({variable: value})

    assert str(refused.value).startswith(f"{variable}:")
    assert value in str(refused.value)


def test_a_complete_production_environment_is_accepted_as_given() -> None:
    settings = load_settings(PRODUCTION)

    assert settings.is_production
    assert settings.is_postgres
    assert settings.database_url == PRODUCTION["MVNE_DATABASE_URL"]
    assert settings.broker_url == PRODUCTION["MVNE_BROKER_URL"]
    assert settings.storage_url == "s3://mvne-objects"
    assert settings.embedded_simulators is False
    assert settings.smdp_url == PRODUCTION["MVNE_SMDP_URL"]
    assert settings.network_url == PRODUCTION["MVNE_NETWORK_URL"]


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("MVNE_SECRET_KEY", "MVNE_SECRET_KEY"),
        ("MVNE_JWT_PRIVATE_KEY", "MVNE_JWT_PRIVATE_KEY"),
        ("MVNE_SIM_KEY", "MVNE_SIM_KEY"),
        ("MVNE_DATABASE_URL", "MVNE_DATABASE_URL"),
        ("MVNE_PLATFORM_DATABASE_URL", "MVNE_PLATFORM_DATABASE_URL"),
        ("MVNE_BROKER_URL", "MVNE_BROKER_URL"),
        ("MVNE_SMDP_URL", "MVNE_SMDP_URL"),
        ("MVNE_NETWORK_URL", "MVNE_NETWORK_URL"),
        ("MVNE_SMDP_CA_FILE", "MVNE_SMDP_CA_FILE"),
        ("MVNE_SMDP_ALLOWED_SUBJECTS", "MVNE_SMDP_ALLOWED_SUBJECTS"),
        ("MVNE_MAIL_URL", "MVNE_MAIL_URL"),
        ("MVNE_CHARGING_URL", "MVNE_CHARGING_URL"),
    ],
)
def test_production_mode_refuses_to_start_without_each_thing_it_needs(missing: str, named: str) -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != missing}

    with pytest.raises(SettingsError) as refused:
        load_settings(environ)

    assert str(refused.value).startswith(f"{named}:")


def test_production_mode_refuses_a_sqlite_database_naming_postgresql() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**PRODUCTION, "MVNE_DATABASE_URL": "sqlite:////srv/mvne.db"})

    assert str(refused.value).startswith("MVNE_DATABASE_URL:")
    assert "PostgreSQL" in str(refused.value)


def test_production_mode_refuses_the_in_memory_broker_naming_redis() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**PRODUCTION, "MVNE_BROKER_URL": "memory://"})

    assert str(refused.value).startswith("MVNE_BROKER_URL:")
    assert "Redis" in str(refused.value)


def test_production_mode_refuses_the_local_mailbox_naming_smtp() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**PRODUCTION, "MVNE_MAIL_URL": "mailbox"})

    assert str(refused.value).startswith("MVNE_MAIL_URL:")
    assert "SMTP" in str(refused.value)


def test_production_mode_accepts_redis_over_tls() -> None:
    assert load_settings({**PRODUCTION, "MVNE_BROKER_URL": "rediss://redis.internal:6380/0"}).broker_url.startswith(
        "rediss://"
    )


def test_embedded_defaults_derive_database_storage_and_simulators_from_var_dir_and_port(tmp_path: Path) -> None:
    settings = load_settings({"MVNE_VAR_DIR": str(tmp_path / "var"), "MVNE_PORT": "9123"})

    assert settings.mode == "embedded"
    assert settings.var_dir == tmp_path / "var"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'var' / 'mvne.db').as_posix()}"
    assert settings.storage_url == f"file://{(tmp_path / 'var' / 'storage').as_posix()}"
    assert settings.public_url == "http://127.0.0.1:9123"
    assert settings.smdp_url == "http://127.0.0.1:9123/sim/smdp"
    assert settings.network_url == "http://127.0.0.1:9123/sim/network"
    assert settings.broker_url == "memory://"


def test_embedded_mode_without_any_variable_runs_on_the_var_folder_and_port_8000() -> None:
    settings = load_settings({})

    assert settings.database_url == "sqlite:///var/mvne.db"
    assert settings.storage_url == "file://var/storage"
    assert settings.smdp_url == "http://127.0.0.1:8000/sim/smdp"


def test_simulator_urls_follow_a_public_url_given_with_a_trailing_slash() -> None:
    settings = load_settings({"MVNE_PUBLIC_URL": "https://mvne.example.com/"})

    assert settings.public_url == "https://mvne.example.com"
    assert settings.smdp_url == "https://mvne.example.com/sim/smdp"
    assert settings.network_url == "https://mvne.example.com/sim/network"


def test_explicit_urls_win_over_the_embedded_defaults(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "MVNE_VAR_DIR": str(tmp_path),
            "MVNE_DATABASE_URL": "postgresql+psycopg://app@localhost/mvne",
            "MVNE_STORAGE_URL": "s3://bucket",
            "MVNE_NETWORK_URL": "http://127.0.0.1:8102",
        }
    )

    assert settings.database_url == "postgresql+psycopg://app@localhost/mvne"
    assert settings.storage_url == "s3://bucket"
    assert settings.network_url == "http://127.0.0.1:8102"
    assert settings.smdp_url.endswith("/sim/smdp")


def test_switches_read_the_usual_spellings_of_true_and_false() -> None:
    assert load_settings({"MVNE_EMBEDDED_SIMULATORS": "off"}).embedded_simulators is False
    assert load_settings({"MVNE_EMBEDDED_SIMULATORS": "Yes"}).embedded_simulators is True
    assert load_settings({"MVNE_EMBEDDED_SIMULATORS": "0"}).network_url == ""


def test_the_cli_stops_on_a_bad_variable_with_its_name_and_no_traceback(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MVNE_")}
    environ.update(MVNE_PORT="abc", MVNE_VAR_DIR=str(tmp_path / "var"))

    done = subprocess.run(
        [str(MVNE), "db", "upgrade"], check=False, env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert done.returncode != 0
    assert "MVNE_PORT" in done.stderr
    assert "'abc'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "var" / "mvne.db").exists()


def test_es2plus_tls_settings_are_read_as_lists_and_the_client_key_goes_with_its_certificate() -> None:
    settings = load_settings(
        {
            "MVNE_SMDP_ALLOWED_SUBJECTS": "smdp.example.net; CN=smdp2.example.net,O=Example\\; Co",
            "MVNE_SMDP_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16",
            "MVNE_SMDP_CLIENT_CERT_FILE": "es2plus.crt",
            "MVNE_SMDP_CLIENT_KEY_FILE": "es2plus.key",
        }
    )

    assert settings.smdp_allowed_subjects == ("smdp.example.net", "CN=smdp2.example.net,O=Example\\; Co")
    assert settings.smdp_trusted_proxies == ("10.0.0.5", "192.168.0.0/16")
    assert settings.smdp_client_cert_header == "X-Client-Cert"
    with pytest.raises(SettingsError) as refused:
        load_settings({"MVNE_SMDP_CLIENT_CERT_FILE": "es2plus.crt"})
    assert str(refused.value).startswith("MVNE_SMDP_CLIENT_KEY_FILE:")
