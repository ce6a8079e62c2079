"""
What a synchronous standby costs on the webhook path, and what a failover
costs in time (RTO) and in acknowledged webhooks (RPO), for three setups
in the same run::

    python -m benchmarks.failover                      # 600 webhooks, 2 drills per setup
    python -m benchmarks.failover --webhooks 200 --drills 1

Each setup is a primary and a ``pg_basebackup`` standby (embedded
PostgreSQL 18 binaries, clusters under a temporary directory, Unix sockets
only) and the real app under uvicorn with the multi-host ``DATABASE_URL``
(``tests/failover_drill.py``):

- ``asynchronous``: streaming replication as set up by ``pg_basebackup -R``
  (the anchor of the ratios);
- ``synchronous on``: ``synchronous_standby_names`` lists the standby,
  ``synchronous_commit = on`` (a commit waits until the standby has flushed
  it to disk);
- ``synchronous remote_apply``: the commit waits until the standby has
  replayed it (reads there see it).

Cost: on one pair with a synchronous standby, rounds of webhooks
(``--senders`` threads posting signed LiveKit sessions) alternate between
``synchronous_commit`` ``local`` (the primary does not wait: asynchronous),
``on`` and ``remote_apply``, set with ``ALTER SYSTEM`` and a reload, so all
three see the same load; webhooks/s and the latency of each answer.
Drill: webhooks flowing, SIGKILL to every process of the primary, a pause
standing for an HA manager's detection (``--detection``), ``pg_ctl
promote``; the time until a webhook sent after the kill is answered 200,
and how many acknowledged webhooks the promoted standby lacks. The results
replace the ``failover`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from benchmarks import report
from tests.failover_drill import WebhookStream, build_pair, recorded_event_ids
from tests.replication import StreamingReplica
from tests.support import LiveServer
from tests.webhook_sessions import WEBHOOK_ENV

#: (name, synchronous_commit on the primary; None: asynchronous standby)
SETUPS: tuple[tuple[str, str | None], ...] = (
    ("asynchronous", None),
    ("synchronous on", "on"),
    ("synchronous remote_apply", "remote_apply"),
)

#: The ``synchronous_commit`` that makes a synchronous standby asynchronous.
ASYNCHRONOUS_COMMIT = "local"

#: Rounds of the cost measurement (each setup once per round).
ROUNDS = 5


@dataclass
class SetupResult:
    """The figures of one setup."""

    name: str
    commit_us: list[float] = field(default_factory=list)
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    after_kill_s: list[float] = field(default_factory=list)
    after_promote_s: list[float] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    wal_lag_bytes: list[int] = field(default_factory=list)


async def wal_lag(pair: StreamingReplica) -> int:
    """Bytes of WAL the primary has written that the standby has not flushed."""
    connection = await asyncpg.connect(pair.database_url)
    try:
        lag = await connection.fetchval(
            "SELECT coalesce(max(pg_current_wal_lsn() - flush_lsn), 0)::bigint "
            "FROM pg_stat_replication"
        )
    finally:
        await connection.close()
    return int(lag or 0)


async def set_synchronous_commit(pair: StreamingReplica, value: str) -> None:
    """``synchronous_commit`` for every session of the primary (``ALTER SYSTEM``, reload)."""
    connection = await asyncpg.connect(pair.database_url)
    try:
        await connection.execute(f"ALTER SYSTEM SET synchronous_commit = '{value}'")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


async def measure_commits(
    pair: StreamingReplica, results: dict[str, SetupResult], commits: int
) -> None:
    """
    One-row INSERTs, each its own transaction, on one connection to the
    primary, the ``synchronous_commit`` of the setups alternating in blocks
    (``SET`` per session): the bare cost of waiting for the standby.
    """
    connection = await asyncpg.connect(pair.database_url)
    try:
        await connection.execute(
            "CREATE TABLE benchmark_commits "
            "(id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"
        )
        block = 50
        for _ in range(max(1, commits // block // len(SETUPS))):
            for name, commit in SETUPS:
                await connection.execute(
                    f"SET synchronous_commit = '{commit or ASYNCHRONOUS_COMMIT}'"
                )
                for _ in range(block):
                    started = time.perf_counter()
                    await connection.execute("INSERT INTO benchmark_commits DEFAULT VALUES")
                    results[name].commit_us.append((time.perf_counter() - started) * 1e6)
        await connection.execute("DROP TABLE benchmark_commits")
    finally:
        await connection.close()


async def measure_cost(
    root: Path, results: dict[str, SetupResult], arguments: argparse.Namespace
) -> str:
    """Alternating rounds on one pair; returns the server's description."""
    pair = await build_pair(root / "cost")
    live: LiveServer | None = None
    try:
        await pair.make_synchronous()
        connection = await asyncpg.connect(pair.database_url)
        try:
            server = await report.server_facts(connection)
        finally:
            await connection.close()
        state_dir = root / "state-cost"
        state_dir.mkdir()
        await measure_commits(pair, results, arguments.commits)
        live = LiveServer(pair.failover_url(), env=WEBHOOK_ENV, state_dir=state_dir)
        live.wait_until_serving()
        per_round = max(1, arguments.webhooks // ROUNDS)
        for _ in range(ROUNDS):
            for name, commit in SETUPS:
                await set_synchronous_commit(pair, commit or ASYNCHRONOUS_COMMIT)
                stream = WebhookStream(live.base_url)
                started = time.monotonic()
                stream.start(senders=arguments.senders)
                stream.wait_for_oks(per_round, timeout=600)
                results[name].seconds += time.monotonic() - started
                stream.stop()
                results[name].latencies_ms += [
                    (answer.at - answer.sent_at) * 1000 for answer in stream.ok()
                ]
        return server
    finally:
        if live is not None:
            live.close()
        pair.close()


async def drill(
    root: Path, result: SetupResult, commit: str | None, arguments: argparse.Namespace
) -> None:
    """A fresh pair of this setup, webhooks flowing, kill, promote: add the figures."""
    pair = await build_pair(root / f"{result.name.replace(' ', '-')}-{len(result.lost)}")
    live: LiveServer | None = None
    try:
        if commit is not None:
            await pair.make_synchronous(commit)
        state_dir = pair.replica_home.parent / "state"
        state_dir.mkdir()
        live = LiveServer(pair.failover_url(), env=WEBHOOK_ENV, state_dir=state_dir)
        live.wait_until_serving()
        stream = WebhookStream(live.base_url)
        stream.start(senders=2)
        stream.wait_for_oks(40)
        result.wal_lag_bytes.append(await wal_lag(pair))
        pair.kill_primary()
        killed_at = time.monotonic()
        await asyncio.sleep(arguments.detection)
        pair.promote()
        promoted_at = time.monotonic()
        recovered_at = stream.wait_for_oks(1, after=killed_at, timeout=60)
        stream.wait_for_oks(20, after=recovered_at)
        stream.stop()
        acknowledged = {answer.event_id for answer in stream.ok()}
        on_new_primary = await recorded_event_ids(pair.replica_url)
        result.after_kill_s.append(recovered_at - killed_at)
        result.after_promote_s.append(recovered_at - promoted_at)
        result.lost.append(len(acknowledged - on_new_primary))
        result.acknowledged.append(len(acknowledged))
        result.refused.append(sum(answer.status != 200 for answer in stream.answers))
    finally:
        if live is not None:
            live.close()
        pair.close()


def render(
    results: list[SetupResult], arguments: argparse.Namespace, machine: str, command: str
) -> str:
    anchor = results[0]
    anchor_p50 = report.median(anchor.latencies_ms) or 1.0
    lines = [
        f"## Failover: synchronous standby cost, RTO and RPO ({report.timestamp()})",
        "",
        f"`{command}`: a primary and a streaming standby (embedded PostgreSQL 18, Unix "
        f"sockets), the app under uvicorn with a multi-host DATABASE_URL. Cost: "
        f"{arguments.webhooks} webhooks from {arguments.senders} senders in {ROUNDS} rounds, "
        "the setups alternating on one pair (synchronous_commit local, on, remote_apply). "
        "Drills: "
        f"{arguments.drills} per setup, SIGKILL to the primary, {arguments.detection:g} s "
        "standing for an HA manager's detection, `pg_ctl promote`.",
        "",
        machine,
        "",
        "| setup | commit p50 µs | commit p50 vs asynchronous | webhooks/s | webhook p50 ms | "
        "webhook p95 ms | webhook p50 vs asynchronous | first 200 after kill (s, max) | "
        "after promote (s, max) | acknowledged, lost | WAL not on standby at kill (bytes, max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    anchor_commit = report.median(anchor.commit_us) or 1.0
    for result in results:
        p50 = report.median(result.latencies_ms)
        lines.append(
            f"| {result.name} | {report.median(result.commit_us):.0f} | "
            f"{report.median(result.commit_us) / anchor_commit:.2f} | "
            f"{len(result.latencies_ms) / (result.seconds or 1):.0f} | "
            f"{p50:.1f} | "
            f"{report.percentile(result.latencies_ms, 0.95):.1f} | {p50 / anchor_p50:.2f} | "
            f"{max(result.after_kill_s):.2f} | {max(result.after_promote_s):.2f} | "
            f"{sum(result.acknowledged)}, {sum(result.lost)} | {max(result.wal_lag_bytes)} |"
        )
    lines += [
        "",
        "Commit: a one-row INSERT in its own transaction on one connection, the setups "
        "alternating in blocks of 50 (SET synchronous_commit). Lost: webhooks answered 200 "
        "that the promoted standby does not hold. Both "
        "servers share one machine here, so an asynchronous standby trails by "
        "microseconds; across a network it trails by the round trip and more under "
        "load, and that lag is what a failover loses (see docs/operations.md).",
    ]
    return "\n".join(lines)


async def run(arguments: argparse.Namespace) -> str:
    root = Path(tempfile.mkdtemp(prefix="conference-bench-issue13-"))
    load_before = report.load_average()
    results = {name: SetupResult(name) for name, _ in SETUPS}
    try:
        server = await measure_cost(root, results, arguments)
        for name, commit in SETUPS:
            for number in range(arguments.drills):
                await drill(root, results[name], commit, arguments)
                print(
                    f"{name} drill {number + 1}: first 200 {results[name].after_kill_s[-1]:.2f} s "
                    f"after the kill, lost {results[name].lost[-1]} of "
                    f"{results[name].acknowledged[-1]}",
                    file=sys.stderr,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    machine = report.machine_description(server, load_before, report.load_average())
    command = "python -m benchmarks.failover " + " ".join(sys.argv[1:])
    return render(list(results.values()), arguments, machine, command.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=600, help="acknowledged webhooks timed")
    parser.add_argument(
        "--commits", type=int, default=3000, help="single-row commits timed (all setups)"
    )
    parser.add_argument("--senders", type=int, default=4, help="threads posting at once")
    parser.add_argument("--drills", type=int, default=2, help="failover drills per setup")
    parser.add_argument(
        "--detection", type=float, default=1.0, help="seconds between the kill and the promote"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write the file")
    arguments = parser.parse_args(argv)
    section = asyncio.run(run(arguments))
    print(section)
    if not arguments.no_write:
        report.write_section("failover", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
