"""A village downlink below the main venue's bitrate (issue 17 item 6), with real aiortc
peers on one process and across workers, the link impaired in user space (bench/impair.py).

The venue publishes its camera (a pre-encoded VP8 clip, 640x360, ~650 kbit/s) and can
send a lower encoding (320x180, ~140 kbit/s) when asked. A village on a 400 kbit/s link
loses a third of what the SFU sends it; the SFU steps it down to the lower encoding,
asking the venue for one (encoding_wanted, quality low), while a village on a clean link
keeps the first. Before, every subscriber got the one stream the venue sent, and the
weak village's only way out was audio alone."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.clip import ClipTrack, encode_clip
from bench.impair import LinkProfile, impair
from signaling.client import SignalingClient

from conftest import BOTH_PLANES

ROOM = "vp8room"
WEAK = LinkProfile("weak", delay_s=0.03, rate_bps=400_000)
CLEAN = LinkProfile("clean")


@pytest.fixture(scope="module")
def clips():
    """The venue's camera and its lower encoding, encoded once for the module."""
    return encode_clip(seconds=2.0, bitrate=700_000), encode_clip(
        seconds=2.0, bitrate=120_000, keyframe_s=1.0, size=(320, 180)
    )


async def joined(server, participant: str, role: str = "terminal") -> SignalingClient:
    client = SignalingClient(server.base_url, server.token(participant, role, ROOM))
    await client.connect()
    return client


async def view(server, client: SignalingClient, subscription) -> dict:
    peer = server.room(ROOM).peers[client.joined["peer_id"]]
    served = peer.subscriptions[subscription.subscription_id]
    return (await server.subscription_view(ROOM, served))["video"]


async def until(server, client, subscription, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        seen = await view(server, client, subscription)
        if predicate(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; the subscription's video: {seen}")
        await asyncio.sleep(0.25)


async def rates(server, watched: list[tuple[SignalingClient, object]], seconds: float):
    """kbit/s the SFU sent each subscription's video over `seconds`."""
    before = [(await view(server, c, s))["bytes_forwarded"] for c, s in watched]
    await asyncio.sleep(seconds)
    after = [(await view(server, c, s))["bytes_forwarded"] for c, s in watched]
    return [(b - a) * 8 / seconds / 1000 for a, b in zip(before, after, strict=True)]


async def drain(subscription, arrivals: list[float] | None = None) -> None:
    """Decode what arrives, as a TV would (aiortc queues it otherwise), noting when."""
    for _ in range(100):
        if "video" in subscription.tracks:
            break
        await asyncio.sleep(0.1)
    track = subscription.tracks["video"]
    while True:
        await track.recv()
        if arrivals is not None:
            arrivals.append(time.monotonic())


@BOTH_PLANES
async def test_a_weak_village_gets_the_lower_stream_while_a_strong_one_keeps_the_first(
    server, clips
):
    high, low = clips
    main = await joined(server, "county-main", "main")
    strong = await joined(server, "village-strong")
    weak = await joined(server, "village-weak")
    links = []
    tasks = []
    try:
        publication = await main.publish([ClipTrack(high)], low_video=ClipTrack(low))
        strong_sub = await strong.subscribe(publication, ["video"])
        weak_sub = await weak.subscribe(
            publication, ["video"], on_gathered=lambda pc: links.append(impair(pc, WEAK, 3))
        )
        tasks = [asyncio.ensure_future(drain(strong_sub)), asyncio.ensure_future(drain(weak_sub))]
        asked = await main.next_event("encoding_wanted", timeout=40)
        assert (asked["publication_id"], asked["quality"]) == (publication, "low")
        assert asked["video_codec"] == "vp8"
        stepped = await until(
            server, weak, weak_sub, lambda v: v["quality"] == "low" and v["steps_down"], 10
        )
        assert stepped["attached"]
        await asyncio.sleep(2)  # the lower stream's keyframe, and the link's queue drained
        dropped_before = links[0].stats()["down_dropped"]
        weak_kbps, strong_kbps = await rates(server, [(weak, weak_sub), (strong, strong_sub)], 4)
        dropped = links[0].stats()["down_dropped"] - dropped_before
        strong_view = await view(server, strong, strong_sub)
        weak_view = await view(server, weak, weak_sub)
    finally:
        for task in tasks:
            task.cancel()
        for link in links:
            link.close()
        for client in (main, strong, weak):
            await client.close()
    print(f"weak village {weak_kbps:.0f} kbit/s ({dropped} dropped), strong {strong_kbps:.0f}")
    # the weak village gets the lower stream, which its link carries; the strong one keeps
    # the first. (Whether the picture is smooth is the Chromium TV's to say, in
    # tests/test_links_browser.py and bench/links.py: aiortc's receiver, wedged by the
    # loss before the step, shows nothing for seconds after.)
    assert weak_kbps < 0.4 * strong_kbps, (weak_kbps, strong_kbps)
    assert dropped < 10, dropped
    assert (strong_view["quality"], strong_view["steps_down"]) == ("high", 0)
    assert not weak_view["video_paused"]  # the lower stream fits: no audio-only
    assert list(main.encodings[publication]) == ["low"]


async def test_a_village_is_tried_on_the_first_stream_again_and_keeps_it_once_it_fits(
    server, clips, monkeypatch
):
    """The ladder's way back up, with its windows shortened: a try while the link is still
    weak falls back within one window; once the link carries it, the first stays."""
    import sfu.tracks

    monkeypatch.setattr(sfu.tracks, "DOWNLINK_WATCH_AFTER_S", 2.0)
    monkeypatch.setattr(sfu.tracks, "DOWNLINK_WINDOW_S", 3.0)
    monkeypatch.setattr(sfu.tracks, "VIDEO_RETRY_S", 3.0)
    high, low = clips
    main = await joined(server, "county-main", "main")
    weak = await joined(server, "village-weak")
    links = []
    task = None
    try:
        publication = await main.publish([ClipTrack(high)], low_video=ClipTrack(low))
        subscription = await weak.subscribe(
            publication, ["video"], on_gathered=lambda pc: links.append(impair(pc, WEAK, 5))
        )
        shown: list[float] = []
        task = asyncio.ensure_future(drain(subscription, shown))
        await until(server, weak, subscription, lambda v: v["steps_down"] == 1, 30)
        # tried again after 3 s: still too weak, down again within a window (not two)
        tried = await until(server, weak, subscription, lambda v: v["steps_up"] == 1, 10)
        assert tried["steps_down"] == 1
        up_at = time.monotonic()
        await until(server, weak, subscription, lambda v: v["steps_down"] == 2, 10)
        fell_after = time.monotonic() - up_at
        # the link improves: the next try (after 6 s) keeps the first stream
        links[0].change(CLEAN)
        await until(server, weak, subscription, lambda v: v["steps_up"] == 2, 15)
        await asyncio.sleep(8)  # more than two windows
        kept = await view(server, weak, subscription)
        last_3_s = sum(1 for t in shown if t > time.monotonic() - 3)
    finally:
        if task is not None:
            task.cancel()
        for link in links:
            link.close()
        await main.close()
        await weak.close()
    assert fell_after < 5.5, fell_after  # one window of 3 s and a report or two
    assert (kept["quality"], kept["steps_down"], kept["steps_up"]) == ("high", 2, 2)
    assert last_3_s >= 45, last_3_s  # of 75 (25 fps): the first stream plays again
