from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from hub.models import Participant
from hub.settings import PREPARE_MARKED_ONLY, database_from_url


def _check(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DATABASE_URL", "CELERY_"))
    }
    base.update(HUB_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "check"],
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "HUB_ENV": "production",
    "HUB_SECRET_KEY": "s" * 40,
    "HUB_API_KEY_PEPPER": "p" * 40,
    "HUB_ENCRYPTION_KEYS": "2Qb1-6Hh3Cq0Yf1d7pO3l3kQyJx0m7H8t9YcS1zv3Wk=",
    "HUB_ALLOWED_HOSTS": "hub.example.cn",
    "DATABASE_URL": "postgres://hub@127.0.0.1:5432/hub",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
}


@pytest.mark.parametrize(
    "missing",
    [
        "HUB_SECRET_KEY",
        "HUB_API_KEY_PEPPER",
        "HUB_ENCRYPTION_KEYS",
        "HUB_ALLOWED_HOSTS",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
    ],
)
def test_production_refuses_to_start_without_each_secret(missing, tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = _check(env, tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_production_refuses_short_secrets_and_sqlite(tmp_path):
    result = _check({**PRODUCTION, "HUB_SECRET_KEY": "short"}, tmp_path)
    assert result.returncode != 0
    assert "at least 32 characters" in result.stderr
    result = _check({**PRODUCTION, "DATABASE_URL": "sqlite:////tmp/x.sqlite3"}, tmp_path)
    assert result.returncode != 0
    assert "PostgreSQL" in result.stderr


def test_production_starts_with_everything_set(tmp_path):
    result = _check(PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_development_needs_nothing(tmp_path):
    result = _check({}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "broker" / "queue").is_dir()


def test_database_url_parsing():
    db = database_from_url("postgres://hub:p%40ss@db.internal:6543/settle?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "settle",
        "hub",
        "p@ss",
        "db.internal",
        "6543",
    )
    assert db["OPTIONS"] == {"sslmode": "require", "prepare_threshold": PREPARE_MARKED_ONLY}
    sqlite = database_from_url("sqlite:////srv/hub/hub.sqlite3")
    assert sqlite["NAME"] == "/srv/hub/hub.sqlite3"
    with pytest.raises(Exception, match="not supported"):
        database_from_url("mysql://x@y/z")


def test_prepared_statements_are_the_marked_ones_unless_the_url_says_otherwise():
    def threshold(query: str) -> object:
        options = database_from_url(f"postgres://hub@db/settle{query}")["OPTIONS"]
        assert isinstance(options, dict)
        return options["prepare_threshold"]

    assert threshold("") == PREPARE_MARKED_ONLY
    assert threshold("?prepare_threshold=none") is None
    assert threshold("?prepare_threshold=None") is None
    assert threshold("?prepare_threshold=5") == 5
    with pytest.raises(ImproperlyConfigured, match="prepare_threshold in DATABASE_URL"):
        database_from_url("postgres://hub@db/settle?prepare_threshold=often")


@pytest.mark.django_db
def test_a_statement_marked_for_preparing_is_prepared_on_the_server(tenants):
    """``prepare=True`` must reach PostgreSQL: Django's default connection options would make
    psycopg ignore it and parse the statement every time."""
    if connection.vendor != "postgresql":
        pytest.skip("server-side prepared statements are PostgreSQL's")
    from hub.services.events import event_emit

    owner = tenants["merchant"].participant
    for _ in range(10):
        event_emit(type="participant.updated", owner=owner, livemode=False, data={})
        assert Participant.objects.filter(pk=owner.pk, legal_name=owner.legal_name).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert sum(statement.startswith('INSERT INTO "hub_event"') for statement in prepared) == 1
    # The ORM's statements are not prepared, however often they run.
    assert not [statement for statement in prepared if '"legal_name"' in statement]


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode():
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default only; this run uses DATABASE_URL")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
