"""Password hashing runs off the event loop: logins must not stall every meeting's media
(in one process the front's loop forwards RTP). Judged against one argon2 check timed on
the loop in the same run, not against a fixed time."""

from __future__ import annotations

import asyncio
import time

from db.accounts import check_password, hash_password

from apiclient import PASSWORD


async def test_logins_do_not_stall_the_event_loop(api):
    stored = hash_password(PASSWORD)
    started = time.perf_counter()
    for _ in range(3):
        check_password(stored, PASSWORD)  # on the loop: what a login used to cost it
    one_check = (time.perf_counter() - started) / 3

    await api.anonymous.call("GET", "/healthz")  # the test client's own first-call set-up
    stalls: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.002)
            stalls.append(time.perf_counter() - before - 0.002)

    watcher = asyncio.ensure_future(probe())
    await asyncio.sleep(0.05)
    try:
        results = await asyncio.gather(
            *(
                api.anonymous.call("POST", "/api/login", {"username": user, "password": pw})
                for user, pw in [("county_admin", PASSWORD), ("town_a_admin", "wrong")] * 4
            )
        )
    finally:
        stop.set()
        await watcher
    assert sum("token" in r for r in results) == 4
    assert sum(r.get("error", {}).get("code") == "bad_credentials" for r in results) == 4
    # eight logins' checks on the loop held it for ~8 x one_check; off it, the loop's
    # longer stalls add up to less than a quarter of that (what is left is the machine)
    stalled = sum(s for s in stalls if s > 0.25 * one_check)
    assert stalled < 2 * one_check, (stalled, one_check, sorted(stalls)[-5:])
