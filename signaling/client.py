"""A Python client of the signaling protocol, with aiortc peer connections.

Used by the tests, the benchmarks and examples/: it speaks docs/protocol.md exactly as
the browser client (web/static/lighthouse.js) does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay


class SignalingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class ClientSubscription:
    subscription_id: str
    publication_id: str
    pc: RTCPeerConnection
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)


def prefer_codec(pc: RTCPeerConnection, video_codec: str) -> None:
    """Put the room's video codec first on every video transceiver (what browsers do too)."""
    wanted = {"h264": "video/h264", "vp8": "video/vp8"}[video_codec]
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "video":
            continue
        caps = RTCRtpSender.getCapabilities("video").codecs
        chosen = [c for c in caps if c.mimeType.lower() == wanted]
        chosen += [c for c in caps if c.mimeType.lower() == "video/rtx"]
        transceiver.setCodecPreferences(chosen)


def keep_video_codecs(sdp: str, video_codecs: list[str]) -> str:
    """An offer with its video codecs cut to `video_codecs` (and their RTX): what a client
    that decodes only those (a Firefox without H.264) can answer."""
    wanted = {c.lower() for c in video_codecs}
    out: list[str] = []
    dropped: set[str] = set()
    in_video = False
    lines = sdp.split("\r\n")
    rtpmaps = {
        line.split()[0].removeprefix("a=rtpmap:"): line.split()[1].split("/")[0].lower()
        for line in lines
        if line.startswith("a=rtpmap:")
    }
    apt = {}
    for line in lines:
        if line.startswith("a=fmtp:") and "apt=" in line:
            apt[line.split()[0].removeprefix("a=fmtp:")] = line.split("apt=")[1].split(";")[0]
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video")
            if in_video:
                fields = line.split()
                kept = [
                    pt
                    for pt in fields[3:]
                    if rtpmaps.get(pt) in wanted
                    or (rtpmaps.get(pt) == "rtx" and rtpmaps.get(apt.get(pt, "")) in wanted)
                ]
                dropped = set(fields[3:]) - set(kept)
                line = " ".join([*fields[:3], *kept])
        elif in_video and line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            if line.split()[0].split(":", 1)[1] in dropped:
                continue
        out.append(line)
    return "\r\n".join(out)


# as often as the browser client pings (web/static/lighthouse.js): the server closes a
# connection it has heard nothing on for 30 s (idle_timeout)
KEEPALIVE_S = 10.0


class SignalingClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        take_over: bool = False,
        keepalive_s: float | None = KEEPALIVE_S,
    ) -> None:
        self.ws_url = base_url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        self.token = token
        # a second connection with the same token is refused (in_use) unless it takes over
        self.take_over = take_over
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.joined: dict[str, Any] | None = None
        self.publish_pcs: list[RTCPeerConnection] = []
        self.subscriptions: dict[str, ClientSubscription] = {}
        # the meeting's control state as last heard (floor, mutes, hands, content)
        self.meeting_state: dict[str, Any] = {}
        self._state_changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self.keepalive_s = keepalive_s
        self._keepalive: asyncio.Task | None = None
        # publications that answer encoding_wanted: their camera, to encode once more
        self._cameras: dict[str, MediaRelay] = {}
        self._camera_tracks: dict[str, MediaStreamTrack] = {}
        # and what they send when asked for a lower encoding (quality "low")
        self._low_tracks: dict[str, MediaStreamTrack] = {}
        # publication -> its encodings' ids, by key: a codec, or "low"
        self.encodings: dict[str, dict[str, str]] = {}
        self._tasks: set[asyncio.Task] = set()

    async def connect(self) -> dict[str, Any]:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.ws_url, max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())
        join: dict[str, Any] = {"type": "join", "token": self.token}
        if self.take_over:
            join["take_over"] = True
        self.joined = await self.request(join)
        self.meeting_state = self.joined.get("meeting_state", {})
        if self.keepalive_s is not None:
            self._keepalive = asyncio.ensure_future(self._ping_every(self.keepalive_s))
        return self.joined

    async def _ping_every(self, interval_s: float) -> None:
        """Ping while connected: a client that only publishes says nothing for hours."""
        try:
            while self._ws is not None and not self._ws.closed:
                await asyncio.sleep(interval_s)
                await self.request({"type": "ping"})
        except (ConnectionError, TimeoutError, SignalingError, RuntimeError):
            pass  # the connection ended: its reader reports that

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(msg.data)
            if message.get("type") == "meeting_state":
                self.meeting_state = message
                self._state_changed.set()
            future = self._pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                if message.get("type") == "encoding_wanted":
                    self._on_encoding_wanted(message)
                await self.events.put(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("signaling connection closed"))
        await self.events.put({"type": "_closed"})

    async def send_raw(self, text: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(text)

    async def request(self, message: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        assert self._ws is not None
        request_id = next(self._ids)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._ws.send_str(json.dumps({**message, "id": request_id}))
        reply = await asyncio.wait_for(future, timeout)
        if reply["type"] == "error":
            raise SignalingError(reply["code"], reply["message"])
        return reply

    async def next_event(self, type_name: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the next event of a type, dropping others."""

        async def wait() -> dict[str, Any]:
            while True:
                event = await self.events.get()
                if event["type"] in (type_name, "_closed"):
                    return event

        return await asyncio.wait_for(wait(), timeout)

    async def state_where(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait until the meeting state satisfies `predicate` (already true: at once)."""

        async def wait() -> dict[str, Any]:
            while not predicate(self.meeting_state):
                self._state_changed.clear()
                await self._state_changed.wait()
            return self.meeting_state

        return await asyncio.wait_for(wait(), timeout)

    @property
    def video_codec(self) -> str:
        assert self.joined is not None
        return self.joined["room"]["video_codec"]

    async def publish(
        self,
        tracks: list[MediaStreamTrack],
        source: str = "camera",
        on_gathered: Callable[[RTCPeerConnection], object] | None = None,
        *,
        video_codec: str | None = None,
        second_encodings: bool = False,
        low_video: MediaStreamTrack | None = None,
    ) -> str:
        """Publish `tracks` in `video_codec` (the room's by default); `on_gathered(pc)`
        runs once its sockets exist, before any media (bench/impair.py impairs the link
        there). With `second_encodings`, the video is published again in another codec
        when the server asks (encoding_wanted), as the browser client does; `low_video`
        is what it publishes when the server asks for a lower encoding (aiortc cannot
        scale a track: the caller gives the lower stream)."""
        relay = None
        if second_encodings:
            relay = MediaRelay()
            tracks = [relay.subscribe(t) if t.kind == "video" else t for t in tracks]
            camera = next(t for t in tracks if t.kind == "video")
        publication_id = await self._publish(
            tracks, source, video_codec or self.video_codec, on_gathered, None
        )
        if relay is not None:
            self._cameras[publication_id] = relay
            self._camera_tracks[publication_id] = camera
        if low_video is not None:
            self._low_tracks[publication_id] = low_video
        return publication_id

    async def _publish(
        self,
        tracks: list[MediaStreamTrack],
        source: str,
        video_codec: str,
        on_gathered: Callable[[RTCPeerConnection], object] | None,
        encoding_of: str | None,
        quality: str | None = None,
    ) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.publish_pcs.append(pc)
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        prefer_codec(pc, video_codec)
        await pc.setLocalDescription(await pc.createOffer())
        if on_gathered is not None:
            on_gathered(pc)
        message = {"type": "publish", "sdp": pc.localDescription.sdp}
        if source != "camera":
            message["source"] = source
        if encoding_of is not None:
            message["encoding_of"] = encoding_of
        if quality is not None:
            message["quality"] = quality
        reply = await self.request(message)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        return reply["publication_id"]

    def _on_encoding_wanted(self, message: dict[str, Any]) -> None:
        publication_id = message.get("publication_id", "")
        codec = message.get("video_codec", "")
        low = message.get("quality") == "low"
        key = "low" if low else codec
        relay = self._cameras.get(publication_id)
        if key in self.encodings.get(publication_id, {}):
            return
        if (low and publication_id not in self._low_tracks) or (not low and relay is None):
            return  # this publisher has no such stream to give

        async def publish_again() -> None:
            self.encodings.setdefault(publication_id, {})[key] = ""
            if low:
                track = self._low_tracks[publication_id]
            else:
                assert relay is not None
                track = relay.subscribe(self._camera_tracks[publication_id])
            encoding_id = await self._publish(
                [track], "camera", codec, None, publication_id, "low" if low else None
            )
            self.encodings[publication_id][key] = encoding_id

        task = asyncio.ensure_future(publish_again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def subscribe(
        self,
        publication_id: str,
        kinds: list[str] | None = None,
        on_gathered: Callable[[RTCPeerConnection], object] | None = None,
        *,
        video_codecs: list[str] | None = None,
    ) -> ClientSubscription:
        """Subscribe; `video_codecs` (default: all aiortc has) are the codecs it decodes."""
        message: dict[str, Any] = {"type": "subscribe", "publication_id": publication_id}
        if kinds is not None:
            message["kinds"] = kinds
        offer = await self.request(message)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        subscription = ClientSubscription(offer["subscription_id"], publication_id, pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            subscription.tracks[track.kind] = track

        offer_sdp = offer["sdp"]
        if video_codecs is not None:
            offer_sdp = keep_video_codecs(offer_sdp, video_codecs)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        if on_gathered is not None:
            on_gathered(pc)
        await self.request(
            {
                "type": "subscription_answer",
                "subscription_id": subscription.subscription_id,
                "sdp": pc.localDescription.sdp,
            }
        )
        self.subscriptions[subscription.subscription_id] = subscription
        return subscription

    async def unsubscribe(self, subscription_id: str) -> None:
        await self.request({"type": "unsubscribe", "subscription_id": subscription_id})
        subscription = self.subscriptions.pop(subscription_id)
        await subscription.pc.close()

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        for task in tuple(self._tasks):
            task.cancel()
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        for pc in self.publish_pcs:
            await pc.close()
        for subscription in self.subscriptions.values():
            await subscription.pc.close()
        if self._session is not None:
            await self._session.close()
