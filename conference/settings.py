"""
Every setting of ``conference``, read from the environment or a ``.env`` file.

This is the only module that reads the environment: everything else asks
:func:`get_settings`. ``.env.example`` documents each setting.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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
