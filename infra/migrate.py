"""Schema migrations (Alembic) and the database roles the application runs as."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mvne.infra.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
# Tables the application and platform roles may read and append to, never change nor erase.
APPEND_ONLY_TABLES = ("audit_events",)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def owner_url(settings: Settings) -> str:
    return settings.migration_database_url or settings.database_url


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate as the schema owner, then let the application's role use the tables (not own them)."""
    if settings.database_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(owner_url(settings)), revision)
    grant_application_role(settings)


def check(settings: Settings) -> None:
    """Raise if autogenerate would find a difference between the models and the migrated schema."""
    command.check(alembic_config(owner_url(settings)))


def grant_application_role(settings: Settings) -> None:
    """On PostgreSQL, give the application and platform roles DML rights only: they never own the tables.

    On the append-only tables they keep SELECT and INSERT alone.
    """
    owner = make_url(owner_url(settings))
    if owner.get_backend_name() != "postgresql":
        return
    roles = {
        make_url(url).username
        for url in (settings.database_url, settings.platform_database_url)
        if url and make_url(url).username != owner.username
    }
    if not roles:
        return
    engine = create_engine(owner)
    try:
        with engine.begin() as conn:
            for role in sorted(r for r in roles if r):
                quoted = conn.dialect.identifier_preparer.quote(role)
                conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
                conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}"))
                conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))
                for table in APPEND_ONLY_TABLES:
                    if conn.scalar(text("SELECT to_regclass(:name)"), {"name": f"public.{table}"}) is not None:
                        conn.execute(text(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {quoted}"))
    finally:
        engine.dispose()


def tenant_isolation_sql(table: str) -> list[str]:
    """Row-level security for a tenant-owned table: only the rows of the session's tenant.

    Platform work connects as a role with BYPASSRLS; nothing a tenant session can set widens this.
    """
    scope = "tenant_id = current_setting('mvne.tenant_id', true)"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING ({scope}) WITH CHECK ({scope})",
    ]
