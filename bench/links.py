"""Village links: what a subscriber on an impaired downlink gets through the SFU.

A Lighthouse server runs in this process (one process, a VP8 room). A main venue
publishes the pre-encoded clip (bench/clip.py: 640x360, 25 fps, ~800 kbit/s) on a clean
link; one village subscribes through each link profile of bench/impair.py in turn (loss,
delay ± jitter, a tail-dropping rate limit, both directions, seeded). For each it reports
the frames decoded per second, the share of time the picture was frozen (gaps longer
than 3 frame intervals), the longest freeze, the packets the link dropped and the ones the
SFU re-sent from its cache. The same run's clean link is the baseline.

The village is aiortc, not a TV's browser: its jitter buffer and NACK timing are
aiortc's, so these figures are the SFU's recovery seen through aiortc, not what a
Chromium TV would show. The last line of output is one JSON object.

    python bench/links.py            # every profile, 10 s each
    python bench/links.py --quick    # clean and village_10, 5 s each (under 60 s)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

# the project first, with bench/ off the path: its db.py would stand in for the db package
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _BENCH]

from aiortc.mediastreams import MediaStreamError  # noqa: E402

from lighthouse.app import create_app  # noqa: E402
from lighthouse.config import RoomConfig, load_config  # noqa: E402
from lighthouse.keys import ROOMS_KEY  # noqa: E402
from signaling.client import SignalingClient  # noqa: E402
from signaling.tokens import TokenIssuer  # noqa: E402

sys.path.append(_BENCH)
from clip import FPS, ClipTrack, encode_clip  # noqa: E402, I001
from impair import PROFILES, impair  # noqa: E402

SECRET = "links-benchmark-secret-0123456789-abcdefghijklmnop"
ROOM = "links"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frozen(arrivals: list[float]) -> tuple[float, float]:
    """(share of the time frozen longer than 3 frame intervals, the longest freeze in s)."""
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    if not gaps:
        return 1.0, 0.0
    long = [g for g in gaps if g > 3 / FPS]
    return sum(long) / (arrivals[-1] - arrivals[0]), max(gaps)


async def one_village(
    base_url: str,
    tokens: TokenIssuer,
    app: web.Application,
    publication_id: str,
    profile_name: str,
    seconds: float,
    seed: int,
) -> dict[str, Any]:
    profile = PROFILES[profile_name]
    village = SignalingClient(
        base_url, tokens.mint(f"village-{profile_name}", profile_name, ROOM, "terminal")
    )
    await village.connect()
    links = []
    try:
        subscription = await village.subscribe(
            publication_id,
            ["video"],
            on_gathered=lambda pc: links.append(impair(pc, profile, seed)),
        )
        for _ in range(200):
            if "video" in subscription.tracks:
                break
            await asyncio.sleep(0.05)
        track = subscription.tracks["video"]
        await asyncio.wait_for(track.recv(), 20)  # the first picture
        arrivals: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(track.recv(), max(0.1, deadline - time.monotonic()))
            except (TimeoutError, MediaStreamError):  # stalled, or the subscription ended
                break
            arrivals.append(time.monotonic())
        publication = app[ROOMS_KEY][ROOM].publications.get(publication_id)
        uptrack = publication.uptracks["video"] if publication else None
        # this village's only; None: the main venue's publication ended meanwhile
        resent = sum(d.retransmissions for d in uptrack.downtracks) if uptrack else None
        share, longest = frozen(arrivals)
        link = links[0].stats()
        return {
            "profile": profile_name,
            "fps": round(len(arrivals) / seconds, 1),
            "frozen_share": round(share, 3),
            "longest_freeze_s": round(longest, 2),
            "down_dropped": link["down_dropped"],
            "down_sent": link["down_sent"],
            "resent_by_sfu": resent,
        }
    finally:
        for link in links:
            link.close()
        await village.close()


async def run(profiles: list[str], seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="lh-links-"))
    config = load_config(
        env={},
        host="127.0.0.1",
        port=_free_port(),
        secret=SECRET,
        database_url=f"sqlite:///{tmp}/links.db",
        recording_dir=str(tmp / "recordings"),
        evidence_dir=str(tmp / "evidence"),
        recording_enabled=False,
        recognition_enabled=False,
        rooms=(RoomConfig(ROOM, "链路测试", "vp8"),),
    )
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    base_url = f"http://{config.host}:{config.port}"
    tokens = TokenIssuer(SECRET)
    main = SignalingClient(base_url, tokens.mint("main", "主会场", ROOM, "main"))
    await main.connect()
    clip_track = ClipTrack(encode_clip())
    results = []
    try:
        publication_id = await main.publish([clip_track])
        for pc in main.publish_pcs:  # a PLI jumps the clip to its next keyframe
            for sender in pc.getSenders():
                sender._send_keyframe = clip_track.request_keyframe  # type: ignore[method-assign]
        for number, name in enumerate(profiles):
            result = await one_village(
                base_url, tokens, app, publication_id, name, seconds, seed=number + 1
            )
            results.append(result)
            if result["resent_by_sfu"] is None:
                print(f"{name}: the main venue's publication ended; stopping", flush=True)
                break
            print(
                f"{name:13} {result['fps']:5.1f} fps  frozen {result['frozen_share']:6.1%}"
                f"  longest {result['longest_freeze_s']:5.2f} s  dropped "
                f"{result['down_dropped']:4}/{result['down_sent']:5}"
                f"  re-sent by the SFU {result['resent_by_sfu']}",
                flush=True,
            )
    finally:
        await main.close()
        await runner.cleanup()
    clean = next((r for r in results if r["profile"] == "clean"), None)
    return {
        "bench": "links",
        "seconds": seconds,
        "results": results,
        "fps_vs_clean": {
            r["profile"]: round(r["fps"] / clean["fps"], 2)
            for r in results
            if clean and clean["fps"]
        },
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="clean and village_10, 5 s each")
    parser.add_argument("--seconds", type=float, help="measured per profile")
    parser.add_argument("--profiles", nargs="+", choices=sorted(PROFILES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    profiles = args.profiles or (
        ["clean", "village_10"]
        if args.quick
        else ["clean", "village_5", "village_10", "weak_village"]
    )
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    print(json.dumps(asyncio.run(run(profiles, seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
