"""Village links: what a TV on an impaired downlink shows and plays through the SFU.

A Lighthouse server runs in this process (one process, a VP8 room). A main venue (aiortc)
publishes the pre-encoded clip (bench/clip.py: 640x360, 25 fps, ~500 kbit/s) and an Opus
tone on a clean link, and its lower encoding (the same clip at 320x180, ~200 kbit/s) when
the SFU asks for one. One village TV per link profile of bench/impair.py, in turn, is
Debian's Chromium running the TV's client (web/static/lighthouse.js); its link is
impaired at the SFU's end of its connection (the server's ICE sockets for that
subscription, both directions: loss, delay ± jitter, a little reordering, a
tail-dropping rate limit; seeded), since this machine has no netem and Chromium's own
sockets cannot be wrapped.

For each profile, over a steady window after a warm-up, from the browser:
- `frozen`: the share of time the picture stood still longer than 3 frame intervals
  (from requestVideoFrameCallback), and the longest such freeze; Chromium's own
  freezeCount / totalFreezesDuration too;
- `fps`: frames presented per second;
- `concealed`: the share of audio samples NetEq had to conceal;
- the packets the link dropped, the SFU's re-sends and what its pacing held back.
The `outage` profile is village_5 with a 3 s outage in the middle of the window; it
reports how long after the link came back the next picture was shown. weak_village is
measured once the SFU has stepped it down (`stream`: the lower one, or paused). `ladder`
is issue 17 item 6's case: a weak village (500 kbit/s) and a strong one (2 Mbit/s) in
the meeting at once, measured together once the weak one stepped down. The same run's
clean link is the baseline. The last line of output is one JSON object.

    python bench/links.py            # every profile and the ladder, 12 s each
    python bench/links.py --quick    # clean and village_10, 6 s each (under 60 s)
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import itertools
import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import web

# the project first, with bench/ off the path: its db.py would stand in for the db package
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _BENCH]

from aiortc import MediaStreamTrack  # noqa: E402

from lighthouse.app import create_app  # noqa: E402
from lighthouse.config import RoomConfig, load_config  # noqa: E402
from lighthouse.keys import ROOMS_KEY  # noqa: E402
from signaling.client import SignalingClient  # noqa: E402
from signaling.tokens import TokenIssuer  # noqa: E402

sys.path.append(_BENCH)
sys.path.append(str(Path(_BENCH).parent / "tests"))
from browser import chromium_args, launched_chromium, write_y4m  # noqa: E402, I001
from clip import FPS, ClipTrack, encode_clip  # noqa: E402
from impair import PROFILES, Impairment, LinkProfile, impair  # noqa: E402

SECRET = "links-benchmark-secret-0123456789-abcdefghijklmnop"
ROOM = "links"
WARM_UP_S = 3.0
SETTLE_S = 3.0  # after a step down: the lower stream's keyframe, the link's queue drained
OUTAGE_S = 3.0
CLIP_BITRATE = 500_000
LOW_CLIP_BITRATE = 200_000  # the venue's lower encoding, 320x180 (a browser's: 360 lines)

# The TV's client, subscribing only, with what the bench reads: the presentation time of
# every frame shown, and the inbound-rtp statistics of both kinds.
TV_PAGE_JS = """
(token) => {
  window.frames_shown = [];
  const client = new LighthouseClient({token, publish: false});
  const stage = document.body.appendChild(document.createElement('main'));
  client.on('subscriptionadded', ({subscription}) => {
    const video = subscription.videoElement;
    const t0 = performance.now();
    subscription.pc.addEventListener('connectionstatechange', () => console.log(
      'pc', Math.round(performance.now() - t0), subscription.pc.connectionState,
      subscription.pc.iceConnectionState));
    stage.appendChild(video);
    const onFrame = (now, meta) => {
      window.frames_shown.push(performance.now());
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  });
  client.on('subscriptionremoved', ({subscription, reason}) => console.log('removed', reason));
  client.on('statechange', ({state}) => console.log('client', state));
  window.lighthouse = client;
  window.inboundStats = async () => {
    const out = {};
    for (const sub of Object.values(client.subscriptions)) {
      (await sub.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp') out[r.kind] = r;
      });
    }
    return out;
  };
  client.start();
}
"""


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames, paced in real time (aiortc encodes it to Opus)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._samples / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(960) + self._samples) / 48000
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, 48000)
        self._samples += 960
        return frame


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frozen(shown_ms: list[float], since_ms: float, until_ms: float) -> tuple[float, float]:
    """(share of [since, until] the picture stood still > 3 frame intervals, longest in s)."""
    times = [since_ms] + [t for t in shown_ms if since_ms < t < until_ms] + [until_ms]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    long = [g for g in gaps if g > 3000 / FPS]
    return sum(long) / (until_ms - since_ms), max(gaps) / 1000


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
    return float(after.get(key, 0) or 0) - float(before.get(key, 0) or 0)


def served_subscription(app: web.Application, room: str, participant_id: str) -> Any | None:
    """The server's side of a participant's video subscription (RoutedSubscription: one
    process, so it is in this one)."""
    peers = app[ROOMS_KEY][room].peers.values()
    for subscription in (
        s for p in peers if p.participant_id == participant_id for s in p.subscriptions.values()
    ):
        routed = subscription._routed
        if routed is not None and not routed.closed and "video" in routed.downtracks:
            return routed
    return None


async def open_village(
    browser: Any,
    base_url: str,
    tokens: TokenIssuer,
    app: web.Application,
    name: str,
    profile: LinkProfile,
    seed: int,
) -> tuple[Any, Any, Impairment, Any]:
    """A village TV's page subscribing, its link impaired: (context, page, link, the
    server's video DownTrack for it)."""
    participant = f"village-{name}-{seed}"
    context = await browser.new_context()
    page = await context.new_page()
    if os.environ.get("LINKS_CONSOLE"):
        page.on("console", lambda m: print(f"  [{name} page] {m.text}", flush=True))
    try:
        await page.goto(f"{base_url}/")
        await page.add_script_tag(url="/static/lighthouse.js")
        await page.evaluate(TV_PAGE_JS, tokens.mint(participant, name, ROOM, "viewer"))
        for _ in range(200):
            served = served_subscription(app, ROOM, participant)
            if served is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the village's subscription never reached the server")
        link = impair(served.pc, profile, seed)
        await page.wait_for_function("() => window.frames_shown.length > 0", timeout=30_000)
    except BaseException:
        await context.close()
        raise
    return context, page, link, served.downtracks["video"]


async def measure(
    name: str, page: Any, link: Impairment, downtrack: Any, seconds: float, outage: bool = False
) -> dict[str, Any]:
    """What one village TV showed and played over `seconds` from now."""
    before = await page.evaluate("() => window.inboundStats()")
    resent_before = downtrack.retransmissions
    bytes_before = downtrack.bytes_forwarded
    stats_before = link.stats()
    since = await page.evaluate("() => performance.now()")
    outage_end = None
    if outage:
        await asyncio.sleep(seconds / 2 - OUTAGE_S / 2)
        link.outage(OUTAGE_S)
        await asyncio.sleep(OUTAGE_S)
        outage_end = await page.evaluate("() => performance.now()")
        await asyncio.sleep(seconds / 2 - OUTAGE_S / 2)
    else:
        await asyncio.sleep(seconds)
    until = await page.evaluate("() => performance.now()")
    after = await page.evaluate("() => window.inboundStats()")
    shown = await page.evaluate("() => window.frames_shown")
    playout_delay = await page.evaluate(
        "() => (Object.values(window.lighthouse.subscriptions)[0]"
        " || {link: {}}).link.playoutDelayMs"
    )
    video_after, video_before = after.get("video", {}), before.get("video", {})
    audio_after, audio_before = after.get("audio", {}), before.get("audio", {})
    samples = _delta(audio_after, audio_before, "totalSamplesReceived")
    share, longest = frozen(shown, since, until)
    window_s = (until - since) / 1000
    stats = link.stats()
    result: dict[str, Any] = {
        "profile": name,
        "fps": round(sum(1 for t in shown if since < t < until) / window_s, 1),
        "frozen_share": round(share, 3),
        "longest_freeze_s": round(longest, 2),
        "chromium_freezes": int(_delta(video_after, video_before, "freezeCount")),
        "chromium_frozen_s": round(_delta(video_after, video_before, "totalFreezesDuration"), 2),
        "concealed_share": round(_delta(audio_after, audio_before, "concealedSamples") / samples, 3)
        if samples
        else None,
        "fec_packets": int(_delta(audio_after, audio_before, "fecPacketsReceived")),
        "nacks_sent": int(_delta(video_after, video_before, "nackCount")),
        "plis_sent": int(_delta(video_after, video_before, "pliCount")),
        "frames_dropped": int(_delta(video_after, video_before, "framesDropped")),
        "frame_height": video_after.get("frameHeight"),
        "to_village_dropped": stats["up_dropped"] - stats_before["up_dropped"],
        "to_village_sent": stats["up_sent"] - stats_before["up_sent"],
        "to_village_dropped_by_queue": (
            stats["up_dropped_by_queue"] - stats_before["up_dropped_by_queue"]
        ),
        "video_kbps": round((downtrack.bytes_forwarded - bytes_before) * 8 / window_s / 1000),
        "resent_by_sfu": downtrack.retransmissions - resent_before,
        "held_back": {
            "not_again_yet": downtrack.resend_limiter.suppressed,
            "over_budget": downtrack.resend_budget.refused,
            "too_old": downtrack.resends_too_old,
        },
        "rtt_ms": round(downtrack.sender.rtt * 1000) if downtrack.sender.rtt else None,
        "tv_playout_delay_ms": playout_delay,
        # the SFU's ladder for this TV: the lower stream, then no video (audio only)
        "stream": "paused" if downtrack.video_paused else ("low" if downtrack.on_low else "high"),
        "steps_down": downtrack.steps_down,
        "video_pauses": downtrack.video_pauses,
        "lost_for_good": (
            round(downtrack.downlink_loss, 3) if downtrack.downlink_loss is not None else None
        ),
        # the TV's own estimate of its downlink (REMB; abs-send-time is stamped at the
        # SFU's send): not what the ladder goes by (sfu/tracks.py says why)
        "tv_remb_kbps": round(downtrack.remb_bitrate / 1000) if downtrack.remb_bitrate else None,
    }
    if outage_end is not None:
        after_outage = [t for t in shown if t > outage_end]
        result["recovery_s"] = (
            round((after_outage[0] - outage_end) / 1000, 2) if after_outage else None
        )
    return result


async def one_village(
    browser: Any,
    base_url: str,
    tokens: TokenIssuer,
    app: web.Application,
    profile_name: str,
    seconds: float,
    seed: int,
) -> dict[str, Any]:
    outage = profile_name == "outage"
    profile = PROFILES["village_5" if outage else profile_name]
    context, page, link, downtrack = await open_village(
        browser, base_url, tokens, app, profile_name, profile, seed
    )
    try:
        await asyncio.sleep(WARM_UP_S)
        if profile_name == "weak_village":  # measured once the SFU has stepped it down
            await settled(downtrack)
        return await measure(profile_name, page, link, downtrack, seconds, outage)
    finally:
        link.close()
        await context.close()


async def settled(downtrack: Any, longest_s: float = 45.0) -> float:
    """Wait until the SFU has stepped a TV down its ladder (the lower stream, or no
    video) and the lower stream has been shown a while; how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < longest_s:
        if downtrack.on_low or downtrack.video_paused:
            await asyncio.sleep(SETTLE_S)
            break
        await asyncio.sleep(0.25)
    return round(time.monotonic() - started, 1)


async def two_villages(
    browser: Any,
    base_url: str,
    tokens: TokenIssuer,
    app: web.Application,
    seconds: float,
) -> dict[str, Any]:
    """Issue 17 item 6's case: a 0.5 Mbit/s village and a 2 Mbit/s one in one meeting."""
    opened = [
        await open_village(browser, base_url, tokens, app, name, PROFILES[name], seed)
        for seed, name in enumerate(("weak_village", "strong_village"), start=11)
    ]
    try:
        took = await settled(opened[0][3])
        measured = await asyncio.gather(
            *(
                measure(f"together_{name}", page, link, downtrack, seconds)
                for name, (_, page, link, downtrack) in zip(
                    ("weak_village", "strong_village"), opened, strict=True
                )
            )
        )
        for result in measured:
            result["stepped_down_after_s"] = took
        return {"weak": measured[0], "strong": measured[1]}
    finally:
        for context, _, link, _ in opened:
            link.close()
            await context.close()


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
    # ~500 kbit/s: with Opus and packet overheads (~150 kbit/s) and re-sends, a 1 Mbit/s
    # village keeps headroom; a stream near the link's rate is issue 17 item 6's case
    clip_track = ClipTrack(encode_clip(bitrate=CLIP_BITRATE))
    low_track = ClipTrack(encode_clip(bitrate=LOW_CLIP_BITRATE, keyframe_s=1.0, size=(320, 180)))
    camera = write_y4m(tmp / "camera.y4m", np.zeros((360, 640, 3), np.uint8), frames=2)
    results = []
    try:
        await main.publish([clip_track, ToneTrack()], low_video=low_track)
        for pc in main.publish_pcs:  # a PLI jumps the clip to its next keyframe
            for sender in pc.getSenders():
                if sender.kind == "video":
                    sender._send_keyframe = clip_track.request_keyframe  # type: ignore[method-assign]
        async with launched_chromium(chromium_args(camera)) as browser:
            for number, name in enumerate(profiles):
                if name == "ladder":
                    together = await two_villages(browser, base_url, tokens, app, seconds)
                    results.extend(together.values())
                    for result in together.values():
                        report(result)
                    continue
                result = await one_village(
                    browser, base_url, tokens, app, name, seconds, number + 1
                )
                results.append(result)
                report(result)
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


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['profile']:28} {result['fps']:5.1f} fps  frozen {result['frozen_share']:6.1%}"
        f" (longest {result['longest_freeze_s']:.2f} s)  audio concealed "
        f"{result['concealed_share'] or 0:6.1%}  dropped "
        f"{result['to_village_dropped']}/{result['to_village_sent']}  re-sent "
        f"{result['resent_by_sfu']}  {result['stream']} {result['video_kbps']} kbit/s"
        + (f"  recovered in {result['recovery_s']} s" if "recovery_s" in result else ""),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="clean and village_10, 6 s each")
    parser.add_argument("--seconds", type=float, help="measured per profile")
    parser.add_argument("--profiles", nargs="+", choices=sorted([*PROFILES, "outage", "ladder"]))
    args = parser.parse_args()
    logging.basicConfig(level=getattr(logging, os.environ.get("LINKS_LOG", "ERROR")))
    profiles = args.profiles or (
        ["clean", "village_10"]
        if args.quick
        else ["clean", "village_5", "village_10", "weak_village", "outage", "ladder"]
    )
    seconds = args.seconds or (6.0 if args.quick else 12.0)
    print(json.dumps(asyncio.run(run(profiles, seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
