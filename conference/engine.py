"""
Which database ``conference`` talks to, and the Piccolo engine that talks to
it.

Every entry point (``piccolo_conf.py`` for the ``piccolo`` CLI and the app,
the tests, host applications) builds its engine with :func:`create_engine`,
so they all select the server the same way: ``DATABASE_URL`` when it is set,
otherwise the embedded PostgreSQL 18 with database ``livekit_conference``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.exceptions import TargetServerAttributeNotMatched
from piccolo.engine.postgres import PostgresEngine
from piccolo.utils.sync import run_sync

from conference import embedded
from conference.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    UnsupportedServerVersion,
)
from conference.pool import ConferencePool
from conference.settings import DATABASE_NAME, Settings, get_settings

logger = logging.getLogger(__name__)

#: The oldest server accepted, as PostgreSQL's ``server_version_num``.
MIN_SERVER_VERSION_NUM = 180001
MIN_SERVER_VERSION = "18.1"

_VERSION_PATTERN = re.compile(r"^\s*(\d+)(?:\.(\d+))?")


# --- URLs -------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


#: What a multi-host ``DATABASE_URL`` must ask for: a server that takes writes.
_WRITABLE_SESSION_ATTRS = ("read-write", "primary")


def url_hosts(url: str) -> list[str]:
    """
    The servers a URL lists, in order, as written: ``host``, ``host:port``
    or a socket directory. One for a plain URL; several for a libpq
    multi-host URL such as
    ``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write``
    or ``postgresql://u@/db?host=/run/pg1,/run/pg2``.
    """
    parts = urlsplit(url.strip())
    hosts = [spec for spec in parts.netloc.rpartition("@")[2].split(",") if spec]
    for value in parse_qs(parts.query).get("host", []):
        hosts.extend(spec for spec in value.split(",") if spec)
    return hosts


def _check_ports(parts: SplitResult) -> None:
    """Raise ``ValueError`` for a port that is not a number (``urlsplit`` reads one only)."""
    for spec in parts.netloc.rpartition("@")[2].split(","):
        port = spec.rpartition("]")[2] if spec.startswith("[") else spec
        _, colon, port = port.partition(":")
        if colon and port and not port.isdigit():
            raise ValueError(f"port {port!r} of host {spec!r} is not a number")
    for value in parse_qs(parts.query).get("port", []):
        if not all(port.strip().isdigit() for port in value.split(",")):
            raise ValueError(f"port={value!r} is not a list of numbers")


def validate_database_url(url: str, setting: str = "DATABASE_URL", *, writable: bool = True) -> str:
    """
    Check that ``url`` is a usable PostgreSQL URL naming a database, and
    return it. Raises :class:`ConfigurationError` with the reason otherwise.

    A libpq multi-host URL (several hosts, see :func:`url_hosts`) is
    accepted; for the primary it must say which host to use, with
    ``target_session_attrs=read-write`` (or ``primary``): every connection
    then goes to the host that takes writes, which after a failover is
    the promoted standby (see docs/operations.md).

    :param setting:
        The setting ``url`` came from, named in the error.
    :param writable:
        ``url`` is the primary's (not a read replica's).
    """
    example = "postgresql://user:password@host:5432/livekit_conference"
    try:
        parts = urlsplit(url.strip())
        _check_ports(parts)
    except ValueError as error:
        raise ConfigurationError(f"{setting} is malformed ({error}); expected {example}") from error
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError(
            f"{setting} must start with postgresql://, got {redact_url(url)!r}; expected {example}"
        )
    if not unquote(parts.path.lstrip("/")):
        raise ConfigurationError(
            f"{setting} names no database: {redact_url(url)}; expected {example}"
        )
    hosts = url_hosts(url)
    attrs = parse_qs(parts.query).get("target_session_attrs", [""])[-1]
    if writable and len(hosts) > 1 and attrs not in _WRITABLE_SESSION_ATTRS:
        raise ConfigurationError(
            f"{setting} lists {len(hosts)} hosts ({', '.join(hosts)}) but does not ask for "
            f"the primary (target_session_attrs={attrs or 'any'}), so connections could land "
            "on a read-only standby; add target_session_attrs=read-write to its query string"
        )
    return url.strip()


def replica_urls(settings: Settings | None = None) -> list[str]:
    """The URLs of ``DATABASE_REPLICA_URLS``, each validated, in order."""
    settings = settings or get_settings()
    return [
        validate_database_url(url, "DATABASE_REPLICA_URLS", writable=False)
        for url in settings.database_replica_urls.split(",")
        if url.strip()
    ]


def database_name(url: str) -> str:
    """The database a URL points at."""
    return unquote(urlsplit(url).path.lstrip("/"))


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def resolve_database_url(settings: Settings | None = None) -> str:
    """
    The URL of the database to use: ``DATABASE_URL``, or the embedded
    server (started on demand) with ``livekit_conference`` created on first
    use.
    """
    settings = settings or get_settings()
    if settings.database_url:
        return validate_database_url(settings.database_url)
    server_url = embedded.start(settings.embedded_data_dir)
    run_sync(create_database_if_missing(server_url, DATABASE_NAME))
    return with_database(server_url, DATABASE_NAME)


async def create_database_if_missing(server_url: str, name: str) -> bool:
    """
    Create database ``name`` on the server of ``server_url`` unless it
    exists. Returns whether it was created. Safe against concurrent callers.
    """
    connection = await _connect(server_url, timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await connection.execute(f"CREATE DATABASE {quoted}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # Another process created it between our check and our CREATE.
            return False
        logger.info("created database %s", name)
        return True
    finally:
        await connection.close()


# --- Server version ---------------------------------------------------------


def parse_server_version(version: str) -> tuple[int, int]:
    """
    ``(major, minor)`` of a ``server_version`` string such as ``"18.6"``,
    ``"18.1 (Debian 18.1-1.pgdg13+2)"`` or ``"19devel"``.
    """
    match = _VERSION_PATTERN.match(version)
    if match is None:
        raise UnsupportedServerVersion(
            f"cannot read the PostgreSQL version {version!r}; PostgreSQL "
            f"{MIN_SERVER_VERSION} or newer is required"
        )
    return int(match.group(1)), int(match.group(2) or 0)


def check_server_version(version: str, url: str = "DATABASE_URL") -> None:
    """
    Raise :class:`UnsupportedServerVersion` unless ``version`` (PostgreSQL's
    ``server_version``) is 18.1 or newer.

    Comparing integers, not floats: as floats 18.10 would equal 18.1.
    """
    major, minor = parse_server_version(version)
    if major * 10000 + minor < MIN_SERVER_VERSION_NUM:
        raise UnsupportedServerVersion(
            f"PostgreSQL {MIN_SERVER_VERSION} or newer is required; "
            f"{redact_url(url)} points at {version.split()[0]}. Upgrade that "
            "server, point DATABASE_URL at a PostgreSQL 18 server, or unset "
            "DATABASE_URL to use the embedded PostgreSQL 18"
        )


# --- Connections ------------------------------------------------------------


def describe_connection_error(error: BaseException, url: str) -> str:
    """One line that says why connecting to ``url`` failed and what to do."""
    where = redact_url(url)
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return (
            f"database {database_name(url)!r} does not exist on the server of "
            f"{where}; create it (CREATE DATABASE {database_name(url)}) or fix "
            "DATABASE_URL"
        )
    if isinstance(
        error,
        (
            asyncpg.InvalidPasswordError,
            asyncpg.InvalidAuthorizationSpecificationError,
        ),
    ):
        return f"the server refused the login for {where}: {error}"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"timed out connecting to {where}; is the server up and reachable?"
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        return (
            f"cannot reach PostgreSQL at {where} ({reason}); is the server "
            "running, and are host and port in DATABASE_URL right?"
        )
    if isinstance(error, asyncpg.CannotConnectNowError):
        return f"the server at {where} is starting up or shutting down: {error}"
    if isinstance(error, TargetServerAttributeNotMatched):
        return (
            f"no host of {where} accepts writes ({error}); a failover is probably under "
            "way: promote a standby, or fix target_session_attrs in DATABASE_URL"
        )
    return f"cannot connect to {where}: {type(error).__name__}: {error}"


def single_host_urls(url: str) -> list[str]:
    """
    One URL per server of a libpq multi-host URL, in order, each with the
    same user, database and options; ``[url]`` for a plain URL.
    """
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    hosts = [host for host in hostlist.split(",") if host]
    if len(hosts) > 1:
        return [urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")) for host in hosts]
    query = parse_qs(parts.query, keep_blank_values=True)
    hosts = [host for host in ",".join(query.get("host", [])).split(",") if host]
    if len(hosts) < 2:
        return [url]
    ports = [port for port in ",".join(query.get("port", [])).split(",") if port]
    urls = []
    for number, host in enumerate(hosts):
        one = {**query, "host": [host]}
        if ports:
            one["port"] = [ports[number] if len(ports) > 1 else ports[0]]
        urls.append(urlunsplit(parts._replace(query=urlencode(one, doseq=True, safe="/"))))
    return urls


async def connect_to_primary(dsn: str, timeout: float, **kwargs: Any) -> asyncpg.Connection:
    """
    ``asyncpg.connect()``, except that each host of a multi-host URL gets
    ``timeout`` seconds of its own, as with libpq's ``connect_timeout``.
    asyncpg's timeout covers all the hosts together, so a host that does
    not answer at all (its machine gone, packets dropped rather than
    refused) would use it up before the next host, the promoted standby,
    is tried. Hosts are tried in order; a standby is passed over by
    ``target_session_attrs``. Raises the last host's error when none fits.
    """
    urls = single_host_urls(dsn)
    for url in urls[:-1]:
        try:
            return await asyncpg.connect(url, timeout=timeout, **kwargs)
        except (OSError, TimeoutError, TargetServerAttributeNotMatched) as error:
            logger.debug("skipping %s: %s: %s", redact_url(url), type(error).__name__, error)
        except asyncpg.PostgresError as error:
            if not isinstance(error, asyncpg.CannotConnectNowError):
                raise  # a refused login or a missing database is the same everywhere
            logger.debug("skipping %s: %s", redact_url(url), error)
    return await asyncpg.connect(urls[-1], timeout=timeout, **kwargs)


async def _connect(url: str, timeout: float) -> asyncpg.Connection:
    try:
        return await connect_to_primary(url, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, TargetServerAttributeNotMatched) as error:
        raise DatabaseUnavailable(describe_connection_error(error, url)) from error
    except (ValueError, asyncpg.InterfaceError) as error:
        # asyncpg raises these for DSNs it cannot parse.
        raise ConfigurationError(
            f"DATABASE_URL {redact_url(url)} is not usable: {error}"
        ) from error


class ConferenceEngine(PostgresEngine):
    """
    Piccolo's ``PostgresEngine``, with a version check that refuses servers
    older than PostgreSQL 18.1, connection errors turned into one clear
    :class:`~conference.errors.ConferenceError`, and a pool of its own
    (:class:`~conference.pool.ConferencePool`: a bounded wait for a
    connection, only live connections handed out) that the ORM and
    :mod:`conference.db` share.

    Piccolo runs :meth:`check_version` when the engine is built, that is
    when ``piccolo_conf.py`` is imported, so a wrong ``DATABASE_URL`` fails
    before any command starts.

    :param url:
        The database URL (a libpq multi-host URL too).
    :param connect_timeout:
        Seconds to open a connection (``DATABASE_CONNECT_TIMEOUT``).
    :param acquire_timeout:
        Seconds to wait for a pooled connection before
        :class:`~conference.errors.DatabaseBusy`
        (``DATABASE_POOL_ACQUIRE_TIMEOUT``).
    """

    def __init__(
        self, url: str, connect_timeout: float, acquire_timeout: float = 1.0, **kwargs: Any
    ) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        super().__init__(config={"dsn": url, "timeout": connect_timeout}, **kwargs)

    async def start_connection_pool(self, **kwargs: Any) -> None:
        """
        Open this engine's :class:`~conference.pool.ConferencePool`, unless
        one is open. ``kwargs`` are ``asyncpg.create_pool()``'s
        (``min_size``, ``max_size`` ...).
        """
        if self.pool is not None:
            return
        options = {**self.config, **kwargs}
        if len(url_hosts(self.url)) > 1:
            options.setdefault("connect", connect_to_primary)
        self.pool = await ConferencePool(
            acquire_timeout=self.acquire_timeout,
            # A live server answers SELECT 1 at once; give a loaded one some slack.
            validation_timeout=min(self.connect_timeout, max(self.acquire_timeout, 1.0)),
            **options,
        )

    async def get_new_connection(self) -> asyncpg.Connection:
        """A connection outside the pool (each host of a multi-host URL tried in turn)."""
        return await connect_to_primary(self.url, timeout=self.connect_timeout)

    async def check_version(self) -> None:
        version = await self.server_version()
        check_server_version(version, self.url)
        logger.info("connected to PostgreSQL %s at %s", version, redact_url(self.url))

    async def server_version(self) -> str:
        """The server's ``server_version`` string, e.g. ``"18.6"``."""
        connection = await _connect(self.url, timeout=self.connect_timeout)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()


class ReplicaEngine(ConferenceEngine):
    """
    A streaming replica of the primary, one of its Piccolo ``extra_nodes``
    (see :mod:`conference.replicas`). Unlike the primary, a replica that
    cannot be reached when the engine is built stops nothing: it is logged,
    and its reads go to the primary until it answers.
    """

    async def check_version(self) -> None:
        try:
            await super().check_version()
        except DatabaseUnavailable as error:
            logger.warning("replica unreachable, its reads go to the primary: %s", error)


def create_engine(settings: Settings | None = None) -> ConferenceEngine:
    """
    Build the engine for the configured database: resolve ``DATABASE_URL``
    or start the embedded server, then check that the server is reachable
    and new enough. Each of ``DATABASE_REPLICA_URLS`` becomes an extra node
    (``replica_1``, ``replica_2`` ...) for :mod:`conference.replicas`.
    """
    settings = settings or get_settings()
    url = resolve_database_url(settings)
    timeouts = {
        "connect_timeout": settings.database_connect_timeout,
        "acquire_timeout": settings.database_pool_acquire_timeout,
    }
    replicas = {
        f"replica_{number}": ReplicaEngine(url=replica_url, **timeouts)
        for number, replica_url in enumerate(replica_urls(settings), start=1)
    }
    return ConferenceEngine(url=url, extra_nodes=replicas, **timeouts)
