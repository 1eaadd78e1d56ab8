"""A Lighthouse server (`lighthouse serve`, recording on) killed with SIGKILL mid-meeting:
every segment it had closed plays whole, the one it was writing plays up to its last
complete fragment or cluster, and after a restart the index holds every file that plays,
each recording closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import av
import pytest
from aiortc import AudioStreamTrack
from sqlalchemy import select

from db.database import Database
from db.models import Recording, RecordingStatus
from recorder.probe import probe_segment
from signaling.client import SignalingClient
from signaling.tokens import TokenIssuer

from conftest import TEST_SECRET, free_port
from media import PictureTrack, face_picture, similarity
from recorder_support import decode_all, segment_files

ROOT = Path(__file__).resolve().parent.parent
PUBLISH_S = 20.0
SEGMENT_S = 4.0
CONTAINERS = {"h264room": ".mp4", "vp8room": ".webm"}


async def start_server(tmp_path: Path) -> tuple[asyncio.subprocess.Process, str, Path]:
    port = free_port()
    config = tmp_path / "lighthouse.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nsecret = "{TEST_SECRET}"\n'
        'log_level = "WARNING"\n\n'
        f'[database]\nurl = "sqlite:///{tmp_path}/server.db"\n\n'
        f'[recording]\ndir = "{tmp_path}/recordings"\nsegment_s = {SEGMENT_S}\n\n'
        '[[rooms]]\nid = "h264room"\nname = "H.264"\nvideo_codec = "h264"\n\n'
        '[[rooms]]\nid = "vp8room"\nname = "VP8"\nvideo_codec = "vp8"\n',
        encoding="utf-8",
    )
    root = tmp_path / "recordings"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTHOUSE_")}
    log = (tmp_path / "server.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lighthouse.cli",
        "serve",
        "--config",
        str(config),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return process, url, root
            await asyncio.sleep(0.1)
    raise AssertionError("the recording server did not start:\n" + server_log(tmp_path))


def server_log(tmp_path: Path) -> str:
    return (tmp_path / "server.log").read_text(errors="replace")[-3000:]


def playable_until(path: Path) -> tuple[float, int, list[float]]:
    """Decode a file packet by packet: (end of the last good video frame in s, frames
    decoded, times of the packets that failed)."""
    failures: list[float] = []
    frames = 0
    end = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            try:
                frames += len(packet.decode())
                end = max(end, t + float((packet.duration or 0) * packet.time_base))
            except av.error.FFmpegError:
                failures.append(t)
    return end, frames, failures


async def test_sigkill_keeps_every_closed_segment_and_most_of_the_open_one(tmp_path):
    process, url, root = await start_server(tmp_path)
    tokens = TokenIssuer(TEST_SECRET)
    picture = face_picture()
    clients = []
    try:
        for room in CONTAINERS:
            client = SignalingClient(url, tokens.mint(f"tv-{room}", "红星村", room, "terminal"))
            await client.connect()
            await client.publish([AudioStreamTrack(), PictureTrack(picture)])
            clients.append(client)
        await asyncio.sleep(PUBLISH_S)
        process.kill()  # SIGKILL: no shutdown, no trailer, no flush
        killed_at = datetime.now(UTC)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)

    for room, suffix in CONTAINERS.items():
        files = [p for p in segment_files(root / room) if p.stat().st_size > 0]
        assert files, server_log(tmp_path)
        assert all(p.suffix == suffix for p in files)
        sequence = [int(re.search(r"-(\d{4})\.", p.name).group(1)) for p in files]
        assert sequence == list(range(len(files)))
        *closed, last = files
        assert len(closed) >= 3, (room, [p.name for p in files])
        for path in closed:  # closed before the kill: whole, on their own
            probed = probe_segment(path)
            assert probed.complete
            assert set(probed.streams) == {"video", "audio"}
            assert all(s.monotonic for s in probed.streams.values())
            assert SEGMENT_S - 0.5 < probed.duration_s < SEGMENT_S + 2.0, probed.duration_s
            assert probed.tags["lighthouse_room"] == room
            pictures, samples = decode_all(path)
            assert (
                samples > 0 and similarity(picture, pictures[-1].to_ndarray(format="rgb24")) > 0.9
            )
        # the open one: readable, and playable up to its last complete fragment or cluster
        probed = probe_segment(last)
        assert not probed.complete  # the kill came before its trailer
        end, frames, failures = playable_until(last)
        assert frames > 0, (room, probed)
        assert all(t > end - 1.5 for t in failures), (room, failures, end)
        lost_s = (killed_at - probed.start).total_seconds() - end
        assert lost_s < 3.0, (room, lost_s)

    # a restart repairs the index: each recording closed, every file that plays indexed
    process, url, _ = await start_server(tmp_path)
    process.terminate()  # a clean stop this time
    assert await asyncio.wait_for(process.wait(), 30) == 0, server_log(tmp_path)
    database = Database(f"sqlite:///{tmp_path}/server.db")
    try:
        async with database.session() as session:
            recordings = (await session.execute(select(Recording))).scalars().all()
    finally:
        await database.close()
    assert sorted(r.room_id for r in recordings) == sorted(CONTAINERS)
    for recording in recordings:
        assert recording.status == RecordingStatus.DONE
        files = [p for p in segment_files(root / recording.room_id) if p.stat().st_size > 0]
        indexed = [root / s.path for s in recording.segments]
        assert indexed == files  # all of them, in order, the cut-off one last
        assert [s.seq for s in recording.segments] == list(range(len(files)))
        assert recording.bytes == sum(p.stat().st_size for p in files)
        last = recording.segments[-1]
        assert last.duration_s == pytest.approx(probe_segment(files[-1]).duration_s)
        assert recording.ended_at == last.ended_at
