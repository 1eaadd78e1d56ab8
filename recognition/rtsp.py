"""An IP camera's RTSP stream pulled by the server (a duty room's existing camera).

The stream is read with PyAV (FFmpeg's RTSP client, over TCP: village links lose UDP)
and never transcoded: its encoded frames go to a `CameraWatcher` as a WebRTC camera's
do, which decodes only the keyframes it samples. Reading runs in a thread of its own
(FFmpeg's reads block); frames are handed to the event loop.

The camera reconnects by itself: a stream that fails to open, ends, errors or sends
nothing for `read_timeout_s` is closed and opened again after a back-off (1 s doubling
to `max_backoff_s`, back to 1 s once frames flow). A stream that is not H.264 or VP8, or
not video, is reported and retried like a failure: an operator may fix the camera.

The URL holds the camera's credentials: it is never logged or reported. Errors are
reported by kind (`CameraStatus.error`), with the URL's password masked where they quote
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import av

from sfu.media.depacketize import Frame

from .watcher import CameraWatcher

logger = logging.getLogger(__name__)

CODECS = {"h264": "h264", "vp8": "vp8"}


def masked(url: str) -> str:
    """The URL with its password replaced by ***, for people to recognise it by."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a URL)"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def check_url(url: str) -> None:
    """A clear error for a URL that cannot be a camera's stream."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValueError("not a valid URL") from error
    if parts.scheme not in ("rtsp", "rtsps"):
        raise ValueError("an IP camera's stream URL starts with rtsp:// (or rtsps://)")
    if not parts.hostname:
        raise ValueError("the URL names no camera (host)")
    if port == 0:
        raise ValueError("port 0 is not a camera's port")


@dataclass
class CameraStatus:
    online: bool = False
    last_frame_at: float | None = None  # time.time()
    error: str | None = None
    attempts: int = 0  # tries to open the stream
    connects: int = 0  # of which opened a video stream
    frames: int = 0


class RtspCamera:
    def __init__(
        self,
        url: str,
        watcher: CameraWatcher,
        *,
        name: str = "",
        on_status: Callable[[CameraStatus], None] | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        check_url(url)
        self.url = url
        self.watcher = watcher
        self.name = name or masked(url)
        self.on_status = on_status
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_backoff_s = max_backoff_s
        self.status = CameraStatus()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"rtsp-{self.name}")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            frames_before = self.status.frames
            ended = asyncio.Event()
            # a thread per camera, not the loop's pool: its reads block for as long as
            # the stream lasts
            thread = threading.Thread(
                target=self._read_then_tell,
                args=(asyncio.get_running_loop(), ended),
                name=f"rtsp-{self.name}",
                daemon=True,
            )
            thread.start()
            try:
                await ended.wait()
            except asyncio.CancelledError:
                self._stop.set()
                raise
            if self._stop.is_set():
                break
            backoff = (
                1.0 if self.status.frames > frames_before else min(self.max_backoff_s, backoff * 2)
            )
            await asyncio.sleep(backoff)

    def _read_then_tell(self, loop: asyncio.AbstractEventLoop, ended: asyncio.Event) -> None:
        try:
            self._read()
        finally:
            loop.call_soon_threadsafe(ended.set)

    def _report(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.status, key, value)
        if self.on_status is not None and self._loop is not None:
            snapshot = CameraStatus(**vars(self.status))
            self._loop.call_soon_threadsafe(self.on_status, snapshot)

    def _read(self) -> None:
        """In its thread: open, read until it fails or is stopped."""
        self._report(attempts=self.status.attempts + 1)
        try:
            container = av.open(
                self.url,
                options={"rtsp_transport": "tcp"},
                timeout=(self.open_timeout_s, self.read_timeout_s),
            )
        except av.error.FFmpegError as error:
            self._report(online=False, error=_kind(error))
            return
        except Exception as error:  # a URL FFmpeg cannot even parse
            self._report(online=False, error=type(error).__name__)
            return
        try:
            video = next((s for s in container.streams if s.type == "video"), None)
            codec = CODECS.get(video.codec_context.name) if video is not None else None
            if video is None or codec is None:
                self._report(online=False, error="not an H.264 or VP8 video stream")
                return
            self.watcher.codec = codec
            extradata = bytes(video.codec_context.extradata or b"")
            annex_b = extradata.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
            self._report(connects=self.status.connects + 1, error=None)
            reported = 0.0
            for packet in container.demux(video):
                if self._stop.is_set():
                    return
                if packet.size == 0:
                    continue
                data = bytes(packet)
                if packet.is_keyframe and annex_b:
                    # the parameter sets may be in the SDP only: each sampled keyframe is
                    # decodable on its own
                    data = extradata + data
                now = time.monotonic()
                frame = Frame(data, int(packet.pts or 0), 0, now, bool(packet.is_keyframe))
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self.watcher.push_frame, frame, now)
                self.status.frames += 1
                if not self.status.online or now - reported > 1.0:  # once a second at most
                    reported = now
                    self._report(online=True, last_frame_at=time.time())
            self._report(online=False, error="the stream ended")
        except av.error.FFmpegError as error:
            self._report(online=False, error=_kind(error))
        finally:
            container.close()


def _kind(error: av.error.FFmpegError) -> str:
    """What went wrong, in words that never hold the URL (FFmpeg's messages quote it)."""
    name = type(error).__name__
    return {
        "HTTPUnauthorizedError": "the camera refused the user name or password",
        "HTTPNotFoundError": "no such stream on the camera (check the path)",
        "ConnectionRefusedError": "the camera refused the connection (check address and port)",
        "TimeoutError": "the camera did not answer in time",
        "InvalidDataError": "the camera sent something that is not a video stream",
        "ExitError": "the camera did not answer in time",
    }.get(name, f"the stream failed ({name})")
