"""
Every setting of ``conference``, read from the environment or a ``.env`` file.

This is the only module that reads the environment: everything else asks
:func:`get_settings`. ``.env.example`` documents each setting.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The database every ``conference`` deployment uses, embedded or not.
DATABASE_NAME = "livekit_conference"


class Settings(BaseSettings):
    """
    Typed settings. Environment variables win over ``.env``; names are not
    case sensitive (``DATABASE_URL`` sets ``database_url``).
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description=(
            "postgresql://user:password@host:port/livekit_conference. "
            "Unset: an embedded PostgreSQL 18 under CONFERENCE_STATE_DIR."
        ),
    )
    conference_state_dir: Path = Field(
        default=Path(".local"),
        description=(
            "Git-ignored local state: the embedded server's data directory "
            "and generated development credentials."
        ),
    )
    database_connect_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to wait for a connection before giving up.",
    )
    database_pool_max_size: int = Field(
        default=20,
        ge=1,
        description="Most connections the pool of conference.db.start_pool() opens.",
    )
    database_pool_acquire_timeout: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Seconds a caller waits for a pooled connection before "
            "conference.errors.DatabaseBusy (webhooks: 503, LiveKit retries)."
        ),
    )
    database_pool_min_size: int = Field(
        default=1,
        ge=0,
        description="Connections the pool opens at start and keeps open when idle.",
    )
    database_slow_query_threshold: float = Field(
        default=0.5,
        gt=0,
        description="Seconds after which conference.db.query() logs a statement as slow.",
    )
    database_replica_urls: str = Field(
        default="",
        description=(
            "Comma-separated postgresql:// URLs of streaming replicas of DATABASE_URL "
            "(conference/replicas.py). Lag-tolerant reads may run there; writes never do."
        ),
    )
    database_replica_max_lag: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds a replica may trail the primary before its reads go to the "
            "primary instead (with a warning)."
        ),
    )
    migration_lock_wait: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Seconds a migrating process waits for another one to finish (the "
            "advisory lock) before giving up."
        ),
    )
    migration_lock_timeout: float = Field(
        default=0.15,
        gt=0,
        description=(
            "PostgreSQL lock_timeout of one attempt of a migration step, in "
            "seconds: writes queued behind a step's lock request wait at most "
            "this long; the step is then rolled back and retried with backoff "
            "until MIGRATION_LOCK_BUDGET runs out."
        ),
    )
    migration_lock_budget: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Seconds a migration step keeps retrying its locks (and the longest "
            "a CONCURRENTLY build or VALIDATE waits for older transactions) "
            "before the run stops; the steps done so far are kept."
        ),
    )
    migration_statement_timeout: float = Field(
        default=600.0,
        ge=0,
        description=("PostgreSQL statement_timeout for migrations, in seconds. 0 means no limit."),
    )
    retention_keep: str = Field(
        default="90d",
        pattern=r"^\s*\d+\s*[hdw]?\s*$",
        description=(
            "History `piccolo conference retention` keeps when given neither --keep "
            "nor --before: 90d (days), 12h (hours) or 2w (weeks)."
        ),
    )
    reports_refresh_interval: float = Field(
        default=60.0,
        ge=0,
        description=(
            "Seconds between two refreshes of the usage rollups (conference.reports) "
            "by the running app; 0 turns its timer off (then schedule `piccolo "
            "conference rollup` yourself)."
        ),
    )

    # --- The ASGI app and piccolo-admin (conference/app.py, admin.py) ------
    conference_env: Literal["development", "production"] = Field(
        default="development",
        description=(
            "production: secure cookies, ALLOWED_HOSTS required, no users "
            "created automatically, no auto-migrate unless AUTO_MIGRATE=true, "
            "and a strong ADMIN_PASSWORD required to start."
        ),
    )
    auto_migrate: bool | None = Field(
        default=None,
        description="Migrate on app startup. Unset: on in development, off in production.",
    )
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated host names the app answers to (production: required).",
    )
    admin_username: str = Field(default="admin", description="The admin user's name.")
    admin_password: SecretStr | None = Field(
        default=None,
        description=(
            "The admin user's password. Development: unset means a random one, "
            "generated once and kept in CONFERENCE_STATE_DIR/admin-password."
        ),
    )
    app_host: str = Field(default="127.0.0.1", description="Where `make run` listens.")
    app_port: int = Field(default=8000, description="Port `make run` listens on.")

    # --- Operating it: logs and metrics (conference/logs.py, metrics.py) ---
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "text: human-readable lines. json: one JSON object per line (request id, "
            "route, status, duration; webhook event id and outcome), for log pipelines."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The lowest level logged."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token GET /metrics requires. Development: unset leaves /metrics "
            "open. Production: unset turns /metrics off (404)."
        ),
    )

    # --- LiveKit webhooks (conference/webhooks/) ---------------------------
    livekit_api_key: str | None = Field(
        default=None,
        description="The LiveKit API key webhooks are signed with (the token's iss).",
    )
    livekit_api_secret: SecretStr | None = Field(
        default=None, description="The secret of LIVEKIT_API_KEY."
    )
    livekit_webhook_keys: SecretStr | None = Field(
        default=None,
        description=(
            "More key pairs webhooks may be signed with, for key rotation: "
            "'key1:secret1,key2:secret2'. Accepted together with LIVEKIT_API_KEY. "
            "No key at all: every webhook is refused."
        ),
    )
    livekit_webhook_max_body_bytes: int = Field(
        default=1_048_576,
        gt=0,
        description="Largest webhook body accepted, in bytes; larger ones get 413.",
    )
    livekit_webhook_batch_max_events: int = Field(
        default=64,
        ge=1,
        description=(
            "Group commit: most webhooks written in one transaction. 1 turns group "
            "commit off (one transaction per webhook)."
        ),
    )
    livekit_webhook_batch_max_wait: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Group commit: seconds a free writer waits for more webhooks before writing "
            "what it has. 0: none; webhooks that arrive while the writers are busy batch "
            "up anyway, and a wait cost webhooks/s (docs/benchmarks.md, 'webhooks'). It "
            "may pay where a commit's WAL flush takes milliseconds: measure there."
        ),
    )
    livekit_webhook_batch_writers: int = Field(
        default=2,
        ge=1,
        description="Group commit: transactions of webhooks in flight at once, per process.",
    )

    @property
    def production(self) -> bool:
        """Whether this is a production deployment."""
        return self.conference_env == "production"

    @property
    def auto_migrate_enabled(self) -> bool:
        """Whether the app migrates on startup (explicit setting, else dev only)."""
        return not self.production if self.auto_migrate is None else self.auto_migrate

    @property
    def allowed_host_list(self) -> list[str]:
        """``ALLOWED_HOSTS`` as a list."""
        return [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]

    @property
    def embedded_data_dir(self) -> Path:
        """Where the embedded server keeps its cluster."""
        return self.conference_state_dir.resolve() / "pgdata"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """
    The settings of this process, read once. Tests that change the
    environment call ``get_settings.cache_clear()``.
    """
    return Settings()
