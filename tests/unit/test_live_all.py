"""app.live_all: a stopping process waits for every controller to end, not only the first (each gives its
Lease up while it ends; tests/integration/test_combined.py sees the Leases of a real two-controller process)."""

from __future__ import annotations

import asyncio

import pytest

from controllers.runtime import app


async def test_cancelling_waits_for_every_life_to_end_even_a_slow_one() -> None:
    started: list[str] = []
    ended: list[str] = []

    async def life(name: str, *, release_seconds: float) -> None:
        started.append(name)
        try:
            await asyncio.Event().wait()  # lives until cancelled
        except asyncio.CancelledError:
            await asyncio.sleep(release_seconds)  # giving its Lease up
            ended.append(name)
            raise

    task = asyncio.create_task(
        app.live_all([life("quick", release_seconds=0), life("slow", release_seconds=0.2)])
    )
    while len(started) < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ended) == ["quick", "slow"]


async def test_a_life_that_fails_ends_the_others_and_is_raised() -> None:
    ended: list[str] = []

    async def healthy() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("healthy")

    async def broken() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(ExceptionGroup) as raised:
        await app.live_all([healthy(), broken()])
    assert [str(e) for e in raised.value.exceptions] == ["a bug"]
    assert ended == ["healthy"]
