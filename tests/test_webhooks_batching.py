"""
How :class:`~conference.webhooks.batching.GroupCommit` forms batches, with
a writer that records what it is given and finishes when the test says.
Writing batches into PostgreSQL, over HTTP, is tested in
``tests/test_webhooks_group_commit.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from conference.errors import DatabaseError
from conference.webhooks.batching import GroupCommit
from conference.webhooks.mapping import EventChanges
from conference.webhooks.store import Outcome, RecordResult


class HeldWriter:
    """Writes nothing; each batch waits until :meth:`release`."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()

    async def __call__(
        self, events: Sequence[tuple[EventChanges, str]]
    ) -> list[RecordResult | DatabaseError]:
        self.batches.append([changes.event_id for changes, _ in events])
        await self.gate.wait()
        return [RecordResult(Outcome.recorded) for _ in events]

    def release(self) -> None:
        self.gate.set()


def _changes(event_id: str) -> EventChanges:
    return EventChanges(
        event_id=event_id,
        event_type="room_started",
        occurred_at=datetime.now(UTC),
        meeting=None,
        participant=None,
        recording=None,
    )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_event_is_written_at_once_by_default() -> None:
    writer = HeldWriter()
    batches = GroupCommit(write=writer)
    recording = asyncio.create_task(batches.record(_changes("EV_1"), "{}"))
    await _settle()
    assert writer.batches == [["EV_1"]]  # no timer ran: it was not kept waiting for company

    writer.release()
    assert await recording == RecordResult(Outcome.recorded)


async def test_events_arriving_while_the_writers_are_busy_form_the_next_batch() -> None:
    writer = HeldWriter()
    batches = GroupCommit(writers=1, max_wait=0, write=writer)
    first = asyncio.create_task(batches.record(_changes("EV_1"), "{}"))
    await _settle()
    assert writer.batches == [["EV_1"]]  # written alone, without waiting for company

    later = [asyncio.create_task(batches.record(_changes(f"EV_{n}"), "{}")) for n in range(2, 6)]
    await _settle()
    assert writer.batches == [["EV_1"]]  # the only writer is busy: they wait together
    writer.release()
    await asyncio.gather(first, *later)

    assert writer.batches == [["EV_1"], ["EV_2", "EV_3", "EV_4", "EV_5"]]


async def test_a_batch_holds_at_most_max_events() -> None:
    writer = HeldWriter()
    batches = GroupCommit(writers=1, max_events=2, write=writer)
    busy = asyncio.create_task(batches.record(_changes("EV_0"), "{}"))
    await _settle()
    waiting = [asyncio.create_task(batches.record(_changes(f"EV_{n}"), "{}")) for n in range(1, 6)]
    await _settle()
    writer.release()
    await asyncio.gather(busy, *waiting)

    assert writer.batches == [["EV_0"], ["EV_1", "EV_2"], ["EV_3", "EV_4"], ["EV_5"]]


async def test_max_wait_collects_events_for_a_free_writer() -> None:
    writer = HeldWriter()
    writer.release()
    batches = GroupCommit(writers=1, max_wait=0.2, write=writer)

    await asyncio.gather(*(batches.record(_changes(f"EV_{n}"), "{}") for n in range(3)))

    assert writer.batches == [["EV_0", "EV_1", "EV_2"]]
