"""Baseline for bench/relay.py: a re-encoding relay built from aiortc's MediaRelay.

The publisher POSTs an offer to /publish; the server decodes its video once. Each
subscriber POSTs a recvonly offer to /subscribe and gets `MediaRelay().subscribe(track)`
on its own peer connection, so every subscriber has its own VP8 encoder: the way an
aiortc server relays media without RTP-level forwarding.

    python bench/reencode_server.py --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

logger = logging.getLogger("bench.reencode")

PCS_KEY = web.AppKey("pcs", set)
STATE_KEY = web.AppKey("state", dict)


def _vp8_only(pc: RTCPeerConnection) -> None:
    codecs = [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType.lower() in ("video/vp8", "video/rtx")
    ]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)


async def _drain(track: MediaStreamTrack) -> None:
    # Keeps the decoder's output consumed while nobody subscribes (a fixed cost,
    # the same at every N), so frames do not pile up in the receiver's queue.
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            await track.recv()


async def _answer(request: web.Request, pc: RTCPeerConnection) -> web.Response:
    await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})


async def publish(request: web.Request) -> web.Response:
    params = await request.json()
    state = request.app[STATE_KEY]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    request.app[PCS_KEY].add(pc)
    track_ready = asyncio.Event()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            state["track"] = track
            state["drain"] = asyncio.ensure_future(_drain(state["relay"].subscribe(track)))
            track_ready.set()

    await pc.setRemoteDescription(RTCSessionDescription(params["sdp"], params["type"]))
    _vp8_only(pc)
    response = await _answer(request, pc)
    state["track_ready"] = track_ready
    return response


async def subscribe(request: web.Request) -> web.Response:
    params = await request.json()
    state = request.app[STATE_KEY]
    ready: asyncio.Event | None = state.get("track_ready")
    if ready is None:
        raise web.HTTPConflict(text="nobody publishes yet")
    await asyncio.wait_for(ready.wait(), 10)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    request.app[PCS_KEY].add(pc)
    await pc.setRemoteDescription(RTCSessionDescription(params["sdp"], params["type"]))
    # Unbuffered: a subscriber whose encoder falls behind skips frames instead of queueing.
    pc.addTrack(state["relay"].subscribe(state["track"], buffered=False))
    _vp8_only(pc)
    return await _answer(request, pc)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "pcs": len(request.app[PCS_KEY])})


def create_app() -> web.Application:
    app = web.Application()
    app[PCS_KEY] = set()
    app[STATE_KEY] = {"relay": MediaRelay()}
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_get("/healthz", healthz)

    async def shutdown(app: web.Application) -> None:
        drain = app[STATE_KEY].get("drain")
        if drain is not None:
            drain.cancel()
        await asyncio.gather(*(pc.close() for pc in app[PCS_KEY]), return_exceptions=True)

    app.on_shutdown.append(shutdown)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(create_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
