"""Media workers: the front places peers on worker processes, a room spans them through
pipes, Redis holds the shared state, and a dead worker's peers move to the others.

These run the real thing: `sfu.worker` processes, the real Redis at 127.0.0.1:6379 (a
database of its own), real aiortc peers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from aiortc import AudioStreamTrack
from redis.exceptions import RedisError

from lighthouse.config import RoomConfig
from lighthouse.keys import CONFIG_KEY, PLANE_KEY, WORKER_POOL_KEY
from signaling.client import SignalingClient, SignalingError

from conftest import TEST_REDIS_URL, free_port
from media import PictureTrack, face_picture, latest_picture, similarity

REDIS_URL = TEST_REDIS_URL
ROOM = "meeting"
pytestmark = pytest.mark.server_config(
    workers=2,
    redis_url=REDIS_URL,
    rooms=(
        RoomConfig("h264room", "H.264 会议", "h264"),
        RoomConfig(ROOM, "党员大会", "vp8", controlled=True),
    ),
)


@pytest.fixture(autouse=True)
async def empty_redis():
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def joined(server, participant: str, role: str = "terminal", room: str = "h264room"):
    client = SignalingClient(server.base_url, server.token(participant, role, room))
    await client.connect()
    return client


def worker_of(server, client: SignalingClient, room: str = "h264room") -> str:
    assert client.joined is not None
    return server.room(room).peers[client.joined["peer_id"]].worker


async def picture_of(track, timeout: float = 15.0) -> np.ndarray:
    return await latest_picture(track, 5, timeout)


async def test_a_room_spans_two_workers_and_redis_knows_where_everything_is(server, empty_redis):
    plane = server.app[PLANE_KEY]
    picture = face_picture()
    publisher = await joined(server, "county-main", "main")
    viewers = [await joined(server, f"village-{i}") for i in range(3)]
    try:
        # placed by load: the publisher and one viewer on one worker, two on the other
        placed = [worker_of(server, c) for c in (publisher, *viewers)]
        assert set(placed) == {"w1", "w2"} and placed.count("w1") == 2
        publication_id = await publisher.publish([AudioStreamTrack(), PictureTrack(picture)])
        for viewer in viewers:
            await viewer.next_event("publication_added")
        subscriptions = [await v.subscribe(publication_id) for v in viewers]
        seen = await asyncio.gather(*(picture_of(s.tracks["video"]) for s in subscriptions))
        assert all(similarity(picture, p) > 0.95 for p in seen)
        stats = await plane.publication_stats(publication_id)
        origin = worker_of(server, publisher)
        other = ({"w1", "w2"} - {origin}).pop()
        # one copy piped to the other worker, fanned out there to its two viewers
        assert list(stats) == [origin, other]
        assert stats[origin]["video"]["fanout"] == 2  # its own viewer + the pipe
        assert stats[other]["video"]["fanout"] == 2
        assert all(n > 0 for n in stats[other]["video"]["forwarded"])
        await plane.cluster.flush()
        assert await empty_redis.hgetall("lh:room:h264room:publications") == {
            publication_id: origin
        }
        participants = await empty_redis.hgetall("lh:room:h264room:participants")
        assert participants["county-main"] == origin
        assert sorted(participants.values()) == sorted(placed)
        workers = {k.split(":")[-1] for k in await empty_redis.keys("lh:worker:*")}
        assert workers == {"w1", "w2"}
    finally:
        for client in (publisher, *viewers):
            await client.close()


def stripes() -> np.ndarray:
    face = face_picture()
    out = np.zeros_like(face)
    out[:, (np.arange(face.shape[1]) // 40) % 2 == 0] = (230, 230, 230)
    return out


async def test_roll_call_and_mute_all_act_on_every_worker(server):
    plane = server.app[PLANE_KEY]
    face, flipped, lines = face_picture(), np.ascontiguousarray(face_picture()[::-1]), stripes()
    main = await joined(server, "county", "main", ROOM)
    v1 = await joined(server, "v1", room=ROOM)
    v2 = await joined(server, "v2", room=ROOM)
    v3 = await joined(server, "v3", room=ROOM)
    clients = (main, v1, v2, v3)
    try:
        workers = {c: worker_of(server, c, ROOM) for c in clients}
        assert workers[v1] != workers[v2] and workers[v3] != workers[v2]
        main_pub = await main.publish([AudioStreamTrack(), PictureTrack(face)])
        v1_pub = await v1.publish([AudioStreamTrack(), PictureTrack(flipped)])
        v2_pub = await v2.publish([AudioStreamTrack(), PictureTrack(lines)])
        for _ in range(3):
            await v3.next_event("publication_added")
        await v3.subscribe(main_pub)
        floor = await v3.subscribe("floor")
        # v2's camera lives on the other worker than v3's: the roll call pipes it over
        await main.request(
            {"type": "control", "action": "roll_call", "peer_id": v2.joined["peer_id"]}
        )
        seen = await picture_of(floor.tracks["video"])
        assert similarity(seen, lines) > 0.9 and similarity(seen, flipped) < 0.7
        await main.request(
            {"type": "control", "action": "roll_call", "peer_id": v1.joined["peer_id"]}
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = await picture_of(floor.tracks["video"])
            if similarity(seen, flipped) > 0.9:
                break
        assert similarity(seen, flipped) > 0.9
        # mute-all: every worker withholds the muted venues' audio
        await main.request({"type": "control", "action": "take_floor"})
        await main.subscribe(v2_pub)  # main venue hears v2 on main's worker too
        await main.request({"type": "control", "action": "mute_all"})
        await asyncio.sleep(1.0)
        stats = await plane.publication_stats(v2_pub)
        assert len(stats) == 2, "v2 was piped to v3's worker for the roll call"
        assert all(view["audio"]["muted"] for view in stats.values())
        # withheld wherever someone would hear it (the origin: the main venue listens)
        heard = [view for view in stats.values() if view["audio"]["fanout"] > 0]
        assert heard and all(view["audio"]["packets_withheld"] > 10 for view in heard)
        await main.request({"type": "control", "action": "unmute_all"})
        stats = await plane.publication_stats(v2_pub)
        assert not any(view["audio"]["muted"] for view in stats.values())
        assert v1_pub in server.room(ROOM).publications
    finally:
        for client in clients:
            await client.close()


async def test_a_killed_worker_is_replaced_and_the_others_keep_forwarding(server, empty_redis):
    pool = server.app[WORKER_POOL_KEY]
    picture = face_picture()
    publisher = await joined(server, "county-main", "main")
    viewers = [await joined(server, f"village-{i}") for i in range(3)]
    try:
        origin = worker_of(server, publisher)
        publication_id = await publisher.publish([PictureTrack(picture)])
        for viewer in viewers:
            await viewer.next_event("publication_added")
        subscriptions = {v: await v.subscribe(publication_id) for v in viewers}
        await asyncio.gather(*(picture_of(s.tracks["video"]) for s in subscriptions.values()))
        victim = ({"w1", "w2"} - {origin}).pop()
        doomed = [v for v in viewers if worker_of(server, v) == victim]
        survivors = [v for v in viewers if worker_of(server, v) == origin]
        assert doomed and survivors

        killed_at = time.monotonic()
        os.kill(pool.pid(victim), signal.SIGKILL)
        for viewer in doomed:  # told, then disconnected: a TV page reconnects by itself
            error = await asyncio.wait_for(viewer.next_event("error"), 5)
            assert error["code"] == "worker_lost"
            # when to come back, spread over the moved peers (4 ms each): not a backoff
            assert 0 <= error["retry_after_ms"] <= 4 * len(doomed)
        # the surviving worker's subscribers never stopped
        for viewer in survivors:
            seen = await picture_of(subscriptions[viewer].tracks["video"], 3)
            assert similarity(picture, seen) > 0.95
        # a replacement starts; the moved TVs join again and see the picture within 5 s
        rejoined = []
        for viewer in doomed:
            await viewer.close()
            again = await joined(server, viewer.joined["peer_id"] and f"again-{len(rejoined)}")
            rejoined.append(again)
            assert worker_of(server, again) != victim
            (pub,) = again.joined["publications"]
            subscription = await again.subscribe(pub["publication_id"])
            seen = await picture_of(subscription.tracks["video"], 5)
            assert similarity(picture, seen) > 0.95
        assert time.monotonic() - killed_at < 5 + 1.5 * len(doomed)
        assert victim in pool.lost_workers
        for _ in range(50):  # the replacement's start
            if len(pool.processes) == 2:
                break
            await asyncio.sleep(0.2)
        assert len(pool.processes) == 2 and victim not in pool.processes
        # Redis forgot the dead worker and its participants
        await server.app[PLANE_KEY].cluster.flush()
        assert await empty_redis.get(f"lh:worker:{victim}") is None
        participants = await empty_redis.hgetall("lh:room:h264room:participants")
        assert victim not in participants.values()
        viewers += rejoined
    finally:
        for client in (publisher, *viewers):
            await client.close()


@pytest.mark.server_config(recording_enabled=True, recording_segment_s=1.0)
async def test_the_recorder_keeps_every_segment_when_the_publishers_worker_is_killed(server):
    """The recorder lives in the front, fed by a pipe: the worker's death is an end of
    stream for it, so the open file is closed and indexed like any other."""
    from sqlalchemy import select

    from db.models import Recording, RecordingSegment, RecordingStatus
    from lighthouse.keys import DATABASE_KEY

    from recorder_support import decode_all, segment_files

    pool = server.app[WORKER_POOL_KEY]
    village = await joined(server, "village")
    try:
        await village.publish([AudioStreamTrack(), PictureTrack(face_picture())])
        await asyncio.sleep(4.5)
        os.kill(pool.pid(worker_of(server, village)), signal.SIGKILL)
        await asyncio.wait_for(village.next_event("error"), 5)
    finally:
        await village.close()
    database = server.app[DATABASE_KEY]
    for _ in range(50):
        async with database.session() as session:
            recordings = (await session.execute(select(Recording))).scalars().all()
        if recordings and all(r.status == RecordingStatus.DONE for r in recordings):
            break
        await asyncio.sleep(0.2)
    [recording] = recordings
    assert recording.status == RecordingStatus.DONE
    async with database.session() as session:
        segments = (await session.execute(select(RecordingSegment))).scalars().all()
    root = Path(server.app[CONFIG_KEY].recording_dir)
    on_disk = segment_files(root)
    # every file on disk is in the index, the one open at the kill included, and plays
    assert len(segments) >= 3 and len(on_disk) == len(segments)
    assert sum(s.duration_s for s in segments) > 3.5
    decoded = [decode_all(path) for path in on_disk]
    assert all(pictures and samples > 0 for pictures, samples in decoded[:-1])
    # the file open at the kill may hold a single picture, but it plays
    assert decoded[-1][0] or decoded[-1][1] > 0


async def test_a_hung_worker_is_declared_dead_within_3_s(server):
    """SIGSTOP: the control connection stays open, only the heartbeat stops."""
    pool = server.app[WORKER_POOL_KEY]
    viewers = [await joined(server, f"village-{i}") for i in range(2)]
    try:
        hung = worker_of(server, viewers[1])
        pid = pool.pid(hung)
        os.kill(pid, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            error = await asyncio.wait_for(viewers[1].next_event("error"), 6)
            assert error["code"] == "worker_lost"
            # heartbeats twice a second, dead 2.5 s after the last, checked 4 times a second
            assert time.monotonic() - stopped_at < 3.0
            assert hung in pool.lost_workers
            # the other worker's peer is untouched
            assert (await viewers[0].request({"type": "ping"}))["type"] == "pong"
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed by the front by now
                os.kill(pid, signal.SIGCONT)
    finally:
        for viewer in viewers:
            await viewer.close()


@pytest.mark.server_config(worker_max_peers=1)
async def test_full_workers_are_skipped_and_then_refuse_with_a_clear_error(server):
    first, second = await joined(server, "village-1"), await joined(server, "village-2")
    third = SignalingClient(server.base_url, server.token("village-3"))
    try:
        assert {worker_of(server, first), worker_of(server, second)} == {"w1", "w2"}
        with pytest.raises(SignalingError) as refused:
            await third.connect()
        assert refused.value.code == "worker_unavailable"
        await third.close()
        await first.close()  # a place frees up: a retry (as the pages do) gets it
        for _ in range(20):
            third = SignalingClient(server.base_url, server.token("village-3"))
            try:
                await third.connect()
                break
            except SignalingError:
                await third.close()
                await asyncio.sleep(0.1)
        assert {worker_of(server, second), worker_of(server, third)} == {"w1", "w2"}
    finally:
        for client in (first, second, third):
            await client.close()


PRIVATE_REDIS_PORT = free_port()


@pytest.fixture
async def private_redis(tmp_path):
    """A Redis of this test's own, to stop and start again (the machine's stays up)."""
    command = [
        "redis-server",
        "--port",
        str(PRIVATE_REDIS_PORT),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]

    async def start():
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0")
        for _ in range(50):
            try:
                await client.ping()
                break
            except (RedisError, OSError):
                await asyncio.sleep(0.1)
        await client.aclose()
        return process

    running = {"process": await start()}

    async def restart(down_s: float) -> None:
        running["process"].terminate()
        await running["process"].wait()
        await asyncio.sleep(down_s)
        running["process"] = await start()

    yield restart
    running["process"].terminate()
    await running["process"].wait()


@pytest.mark.server_config(redis_url=f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0")
async def test_a_redis_restart_ends_no_meeting(private_redis, server):
    """Redis stopped for 4 s mid-meeting: media flows on, a late joiner gets the picture,
    no worker is declared dead, and the registry is back once Redis is."""
    pool = server.app[WORKER_POOL_KEY]
    picture = face_picture()
    publisher = await joined(server, "county-main", "main")
    viewer = await joined(server, "village")
    late = None
    try:
        publication_id = await publisher.publish([PictureTrack(picture)])
        await viewer.next_event("publication_added")
        subscription = await viewer.subscribe(publication_id)
        await picture_of(subscription.tracks["video"])
        restarting = asyncio.ensure_future(private_redis(4.0))
        await asyncio.sleep(1.5)
        seen = await picture_of(subscription.tracks["video"], 3)
        assert similarity(picture, seen) > 0.95
        late = await joined(server, "late")
        late_sub = await late.subscribe(publication_id)
        assert similarity(picture, await picture_of(late_sub.tracks["video"])) > 0.95
        await restarting
        await asyncio.sleep(2.5)
        assert pool.lost_workers == [], "Redis going away killed no worker"
        client = aioredis.Redis.from_url(
            f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0", decode_responses=True
        )
        try:
            workers = {k.split(":")[-1] for k in await client.keys("lh:worker:*")}
        finally:
            await client.aclose()
        assert workers == {"w1", "w2"}
        seen = await picture_of(subscription.tracks["video"], 3)
        assert similarity(picture, seen) > 0.95
    finally:
        for client in (publisher, viewer, late):
            if client is not None:
                await client.close()
