"""Load-client worker processes for bench/relay.py: one publisher, or a group of subscribers.

Run by relay.py as `python bench/loadclients.py`. It reads one JSON command per line on
stdin and answers each with one JSON line on stdout (logs go to stderr), so the
orchestrator can drive several such processes, each with its own event loop.

Subscribers never decode: each receiver is turned into Lighthouse's ForwardingReceiver
(SRTP, RTCP, NACK and REMB as usual, no decoder thread) whose sink only counts packets,
bytes and frames (distinct RTP timestamps of video packets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from typing import Any

import aiohttp
import psutil
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu.aiortc_seam import ForwardingReceiver
from signaling.client import SignalingClient, prefer_codec

from clip import Clip, ClipTrack, encode_clip
from janus import ROOM_ID as JANUS_ROOM
from janus import JanusSession

logger = logging.getLogger("bench.loadclients")

PING_INTERVAL_S = 10.0  # the protocol's client ping period (the server drops idle sockets)
CONNECT_CONCURRENCY = 4  # parallel subscribe handshakes per process: keeps DTLS bursts small
REQUEST_TIMEOUT_S = 30.0


class CountingSink:
    """An UpstreamSink that only counts what arrives."""

    def __init__(self) -> None:
        self.packets = 0
        self.video_packets = 0
        self.bytes = 0
        self.frames = 0
        self._recent: list[int] = []  # last few RTP timestamps: reordering is not a new frame
        # sequence numbers seen, unwrapped: gaps are packets lost between server and here
        self._first_seq: int | None = None
        self._highest_seq = 0

    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        self.packets += 1
        self.bytes += len(packet.payload)
        if not codec.mimeType.lower().startswith("video/"):
            return
        self.video_packets += 1
        seq = packet.sequence_number
        if self._first_seq is None:
            self._first_seq = self._highest_seq = seq
        else:
            delta = (seq - self._highest_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                self._highest_seq += delta
        if packet.timestamp not in self._recent:
            self.frames += 1
            self._recent.append(packet.timestamp)
            if len(self._recent) > 8:
                del self._recent[0]

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        pass

    def on_bye(self) -> None:
        pass

    def upstream_fraction_lost(self, own: int) -> int:
        return own

    def upstream_bitrate_cap(self) -> int | None:
        return None

    def counters(self) -> dict[str, int]:
        return {
            "packets": self.packets,
            "video_packets": self.video_packets,
            "bytes": self.bytes,
            "frames": self.frames,
            "expected": 0 if self._first_seq is None else self._highest_seq - self._first_seq + 1,
        }


def _rtc_config() -> RTCConfiguration:
    # No ICE servers at all: aiortc would try a public STUN server otherwise.
    return RTCConfiguration(iceServers=[])


def _count_on(pc: RTCPeerConnection) -> CountingSink:
    """Turn every receiver of `pc` (not yet started) into a counting ForwardingReceiver."""
    sink = CountingSink()
    for transceiver in pc.getTransceivers():
        ForwardingReceiver.install(transceiver.receiver).sink = sink
    return sink


class Worker:
    def __init__(self) -> None:
        self.http: aiohttp.ClientSession | None = None
        self.clients: list[SignalingClient] = []
        self.pcs: list[RTCPeerConnection] = []
        self.sinks: list[CountingSink] = []
        self.track: ClipTrack | None = None
        self.village_clip: Clip | None = None
        self.village_tracks: list[ClipTrack] = []
        self.janus_sessions: list[JanusSession] = []
        self._pingers: list[asyncio.Task] = []
        self._process = psutil.Process()

    # -- publisher -------------------------------------------------------------------------
    def prepare_clip(self, seconds: float) -> dict[str, Any]:
        clip = encode_clip(seconds=seconds)
        self.track = ClipTrack(clip)
        return {"clip_kbps": round(clip.kbps, 1), "keyframes": clip.keyframes}

    async def publish_lighthouse(self, url: str, token: str) -> dict[str, Any]:
        assert self.track is not None
        client = await self._joined(url, token)
        publication_id = await client.publish([self.track])
        self._answer_keyframe_requests(client.publish_pcs[-1])
        return {"publication_id": publication_id}

    async def publish_reencode(self, url: str) -> dict[str, Any]:
        assert self.track is not None
        pc = RTCPeerConnection(_rtc_config())
        self.pcs.append(pc)
        pc.addTransceiver(self.track, direction="sendonly")
        prefer_codec(pc, "vp8")
        answer = await self._post_offer(pc, f"{url}/publish")
        await pc.setRemoteDescription(answer)
        self._answer_keyframe_requests(pc)
        return {}

    def _answer_keyframe_requests(
        self, pc: RTCPeerConnection, track: ClipTrack | None = None
    ) -> None:
        # aiortc's sender turns a PLI/FIR into _send_keyframe(), which only flags its own
        # encoder; with pre-encoded packets the track has to do it.
        track = track or self.track
        assert track is not None
        for sender in pc.getSenders():
            sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]

    # -- subscribers -----------------------------------------------------------------------
    async def add_lighthouse(
        self, url: str, tokens: list[str], publication_id: str
    ) -> dict[str, Any]:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(token: str) -> None:
            async with limit:
                client = await self._joined(url, token)
                await self._subscribe_counting(client, publication_id)

        await asyncio.gather(*(one(t) for t in tokens))
        return {"subscribers": len(self.sinks)}

    async def _joined(self, url: str, token: str) -> SignalingClient:
        """A signaling client that has joined, kept alive with pings."""
        client = SignalingClient(url, token)
        self.clients.append(client)
        await client.connect()
        self._keep_alive(client)
        return client

    async def _subscribe_counting(self, client: SignalingClient, publication_id: str) -> None:
        """Subscribe `client` to a publication with a counting, non-decoding receiver."""
        offer = await client.request({"type": "subscribe", "publication_id": publication_id})
        pc = RTCPeerConnection(_rtc_config())
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        # The transceivers exist now and their receivers start with the answer.
        self.sinks.append(_count_on(pc))
        await pc.setLocalDescription(await pc.createAnswer())
        await client.request(
            {
                "type": "subscription_answer",
                "subscription_id": offer["subscription_id"],
                "sdp": pc.localDescription.sdp,
            }
        )

    async def add_villages(
        self,
        url: str,
        tokens: list[str],
        publication_id: str | None = None,
        clip_kbps: int = 300,
        clip_fps: int = 15,
    ) -> dict[str, Any]:
        """Village TVs (bench/county.py): each publishes its own camera (a small pre-encoded
        clip of the astronaut, panned and zoomed: a village uplink with a face) and, given
        `publication_id`, receives it without decoding (bench/stall.py: cameras only)."""
        if self.village_clip is None:
            self.village_clip = encode_clip(seconds=4.0, fps=clip_fps, bitrate=clip_kbps * 1000)
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(token: str) -> None:
            async with limit:
                client = await self._joined(url, token)
                assert self.village_clip is not None
                camera = ClipTrack(self.village_clip)
                self.village_tracks.append(camera)
                await client.publish([camera])
                self._answer_keyframe_requests(client.publish_pcs[-1], camera)
                if publication_id is not None:
                    await self._subscribe_counting(client, publication_id)

        await asyncio.gather(*(one(t) for t in tokens))
        return {"cameras": len(tokens), "subscribers": len(self.sinks)}

    # -- Janus (bench/janus.py): the C SFU baseline ---------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self.http is None:
            self.http = aiohttp.ClientSession()
        return self.http

    async def publish_janus(self, url: str) -> dict[str, Any]:
        assert self.track is not None
        session = JanusSession(self._http(), url)
        await session.open()
        self.janus_sessions.append(session)
        pc = RTCPeerConnection(_rtc_config())
        self.pcs.append(pc)
        pc.addTransceiver(self.track, direction="sendonly")
        prefer_codec(pc, "vp8")
        await pc.setLocalDescription(await pc.createOffer())
        event = await session.request(
            {"request": "joinandconfigure", "ptype": "publisher", "room": JANUS_ROOM},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp},
        )
        await pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"], "answer"))
        self._answer_keyframe_requests(pc)
        feed = event["plugindata"]["data"]["id"]
        # subscribers can join a feed only once its media is up in Janus
        for _ in range(100):
            listed = await session.request({"request": "listparticipants", "room": JANUS_ROOM})
            participants = listed["plugindata"]["data"].get("participants", [])
            if any(p.get("id") == feed and p.get("publisher") for p in participants):
                return {"feed": feed}
            await asyncio.sleep(0.1)
        raise RuntimeError("the Janus publisher never came up")

    async def add_janus(self, url: str, count: int, feed: int) -> dict[str, Any]:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one() -> None:
            async with limit:
                session = JanusSession(self._http(), url)
                await session.open()
                self.janus_sessions.append(session)
                event = await session.request(
                    {
                        "request": "join",
                        "ptype": "subscriber",
                        "room": JANUS_ROOM,
                        "streams": [{"feed": feed}],
                    }
                )
                pc = RTCPeerConnection(_rtc_config())
                self.pcs.append(pc)
                await pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"], "offer"))
                self.sinks.append(_count_on(pc))
                await pc.setLocalDescription(await pc.createAnswer())
                await session.request(
                    {"request": "start", "room": JANUS_ROOM},
                    jsep={"type": "answer", "sdp": pc.localDescription.sdp},
                )

        await asyncio.gather(*(one() for _ in range(count)))
        return {"subscribers": len(self.sinks)}

    async def add_reencode(self, url: str, count: int) -> dict[str, Any]:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one() -> None:
            async with limit:
                pc = RTCPeerConnection(_rtc_config())
                self.pcs.append(pc)
                pc.addTransceiver("video", direction="recvonly")
                prefer_codec(pc, "vp8")
                self.sinks.append(_count_on(pc))
                await pc.setRemoteDescription(await self._post_offer(pc, f"{url}/subscribe"))

        await asyncio.gather(*(one() for _ in range(count)))
        return {"subscribers": len(self.sinks)}

    # -- common ----------------------------------------------------------------------------
    async def _post_offer(self, pc: RTCPeerConnection, url: str) -> RTCSessionDescription:
        if self.http is None:
            self.http = aiohttp.ClientSession()
        await pc.setLocalDescription(await pc.createOffer())
        payload = {"sdp": pc.localDescription.sdp, "type": "offer"}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with self.http.post(url, json=payload, timeout=timeout) as response:
            response.raise_for_status()
            answer = await response.json()
        return RTCSessionDescription(answer["sdp"], answer["type"])

    def _keep_alive(self, client: SignalingClient) -> None:
        async def ping() -> None:
            while True:
                await asyncio.sleep(PING_INTERVAL_S)
                with contextlib.suppress(Exception):
                    await client.request({"type": "ping"}, timeout=5)

        self._pingers.append(asyncio.ensure_future(ping()))

    async def snapshot(self) -> dict[str, Any]:
        cpu = self._process.cpu_times()
        # packets the server reported lost on the way up (its receiver reports)
        upstream_lost = 0
        for pc in [*self.pcs, *(p for c in self.clients for p in c.publish_pcs)]:
            for sender in pc.getSenders():
                for stats in (await sender.getStats()).values():
                    if stats.type == "remote-inbound-rtp":
                        upstream_lost += stats.packetsLost
        return {
            "upstream_lost": upstream_lost,
            "t": time.monotonic(),
            "cpu": cpu.user + cpu.system,
            "subs": [s.counters() for s in self.sinks],
            "frames_sent": self.track.frames_sent if self.track else 0,
            "keyframes_requested": self.track.keyframes_requested if self.track else 0,
        }

    async def close_all(self) -> dict[str, Any]:
        for task in self._pingers:
            task.cancel()
        self._pingers.clear()
        for session in self.janus_sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), 5)
        self.janus_sessions.clear()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 10)
        for pc in self.pcs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 10)
        if self.http is not None:
            await self.http.close()
            self.http = None
        self.clients.clear()
        self.pcs.clear()
        self.sinks.clear()
        self.village_tracks.clear()
        if self.track is not None:
            # a new ClipTrack for the next publication: a stopped track cannot be resent
            clip = self.track.clip
            self.track = ClipTrack(clip)
        return {}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.pop("cmd")
        if name == "prepare_clip":
            return self.prepare_clip(**command)
        if name == "snapshot":
            return await self.snapshot()
        handlers = {
            "publish_lighthouse": self.publish_lighthouse,
            "publish_reencode": self.publish_reencode,
            "add_lighthouse": self.add_lighthouse,
            "add_reencode": self.add_reencode,
            "add_villages": self.add_villages,
            "publish_janus": self.publish_janus,
            "add_janus": self.add_janus,
            "close_all": self.close_all,
        }
        return await handlers[name](**command)


async def serve_commands() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker()
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("cmd") == "stop":
                break
            try:
                reply = {"ok": True, **await worker.handle(command)}
            except Exception as exc:  # report it; the orchestrator decides to give up
                logger.exception("command failed")
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
    finally:
        await worker.close_all()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve_commands())


if __name__ == "__main__":
    main()
