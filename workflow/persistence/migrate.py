"""Schema migrations (Alembic), callable from the CLI and the tests."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from workflow.persistence.database import Database


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("workflow.persistence.migrations")))
    # Alembic's config is a ConfigParser: a literal % (an URL-encoded password, a query
    # option) must be doubled, or reading it back fails with "invalid interpolation".
    url = db.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    config = alembic_config(db)
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(db: Database, revision: str) -> None:
    """Back to ``revision`` (an operator's way out of a release, and the migrations' tests)."""
    config = alembic_config(db)
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(db: Database) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()
