"""The camera watcher's choice of what to decode, on a real H.264 stream and real models:
every frame in the sign-in window, short keyframe-started bursts afterwards (and a
late-comer is still signed in during one), scene snapshots on schedule, and a slow worker
makes it drop frames rather than fall behind."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import av
import pytest
from faces import Appearance, enrolment_photo, render_frame, sample_faces

from recognition.gallery import Gallery, enrol_photo
from recognition.pipeline import FacePipeline, SignIn
from recognition.watcher import CameraWatcher, SamplingSettings, WatchResult
from recognition.yunet_sface import YuNetSFace
from sfu.media.depacketize import Frame

FPS = 15


def encoded_frames(appearances: list[Appearance], seconds: float, gop: int = FPS) -> list[Frame]:
    """The meeting as a TV's encoder sends it: H.264 Annex-B frames, a keyframe every
    `gop` frames, arrival times 1/FPS apart."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 640, 360, "yuv420p"
    encoder.framerate = FPS
    encoder.gop_size = gop
    encoder.bit_rate = 400_000
    encoder.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline"}
    frames = []
    for index in range(int(seconds * FPS)):
        picture = av.VideoFrame.from_ndarray(
            render_frame(appearances, index / FPS)[:, :, ::-1].copy(), format="rgb24"
        ).reformat(format="yuv420p")
        picture.pts = index
        for packet in encoder.encode(picture):
            frames.append(Frame(bytes(packet), index * 6000, 1, index / FPS, packet.is_keyframe))
    return frames


@pytest.fixture(scope="module")
def engine() -> YuNetSFace:
    return YuNetSFace()


@pytest.fixture(scope="module")
def faces():
    return sample_faces()


def gallery(engine, faces, names: list[str]) -> Gallery:
    return Gallery(
        engine.model_id,
        {name: [enrol_photo(engine, enrolment_photo(faces[name])).embedding] for name in names},
    )


async def test_patrol_decodes_bursts_only_and_still_signs_in_a_late_comer(engine, faces):
    # Tom sits there from the start; the astronaut comes in after the sign-in window
    frames = encoded_frames(
        [
            Appearance(faces["tom"], 0.0, 30, 200, 180, 150),
            Appearance(faces["astronaut"], 11.0, 30, 440, 180, 150),
        ],
        seconds=24,
    )
    results: list[WatchResult] = []
    settings = SamplingSettings(
        signin_window_s=5, burst_every_s=5, burst_s=1.5, snapshot_every_s=10
    )
    with ThreadPoolExecutor(2) as pool:
        watcher = CameraWatcher(
            FacePipeline(engine, gallery(engine, faces, ["tom", "astronaut"])),
            pool,
            lambda _, result: results.append(result),
            settings,
            codec="h264",
        )
        for frame in frames:  # as fast as the worker keeps up: nothing is dropped
            watcher.push_frame(frame, frame.arrival)
            await watcher.drain()
    signins = {d.member: r.t for r in results for d in r.decisions if isinstance(d, SignIn)}
    assert set(signins) == {"tom", "astronaut"}
    assert signins["tom"] < 2.5
    # the astronaut came in at 11 s, during patrol: signed in in the burst at 15 s
    assert 11 < signins["astronaut"] < 18
    assert watcher.frames_dropped == 0
    window = 5 * FPS
    # the window decodes every frame; patrol decodes about burst_s / burst_every_s of them
    assert watcher.frames_decoded >= window
    patrol_decoded = watcher.frames_decoded - window
    patrol_frames = len(frames) - window
    assert 0.15 < patrol_decoded / patrol_frames < 0.45, watcher.stats()
    # every frame is decoded or skipped, but those after the last sample (still pending)
    assert len(frames) - FPS <= watcher.frames_skipped + watcher.frames_decoded <= len(frames)
    # scene snapshots: at the start and every 10 s of the camera
    snapshot_times = [r.t for r in results if r.scheduled_snapshot]
    assert snapshot_times[0] == 0 and len(snapshot_times) == 3, snapshot_times
    assert all(r.scene_jpeg for r in results if r.scheduled_snapshot)


class SlowEngine:
    """The real engine, slowed down as an overloaded worker pool would be."""

    def __init__(self, engine, delay_s: float) -> None:
        self.engine, self.delay_s = engine, delay_s
        self.model_id = engine.model_id

    def detect(self, bgr):
        time.sleep(self.delay_s)
        return self.engine.detect(bgr)

    def embed(self, crops):
        return self.engine.embed(crops)


async def test_a_slow_worker_makes_the_watcher_drop_frames_not_fall_behind(engine, faces):
    frames = encoded_frames([Appearance(faces["tom"], 0, 10, 320, 180, 150)], 4, gop=15)
    lags = []
    settings = SamplingSettings(max_backlog_s=0.5)
    with ThreadPoolExecutor(1) as pool:
        watcher = CameraWatcher(
            FacePipeline(SlowEngine(engine, 0.8), gallery(engine, faces, ["tom"])),
            pool,
            lambda _, result: lags.append(time.monotonic() - result.at),
            settings,
            codec="h264",
        )
        start = time.monotonic()
        for frame in frames:  # in real time, whatever the worker does
            frame.arrival = start + frame.arrival
            await asyncio.sleep(max(0.0, frame.arrival - time.monotonic()))
            watcher.push_frame(frame, time.monotonic())
        await watcher.drain()
    assert watcher.frames_dropped > 0, watcher.stats()
    # a result is never older than the backlog allowed plus one job
    assert lags and max(lags) < settings.max_backlog_s + 0.8 + 0.6, lags


def test_a_scene_picture_is_scaled_down_by_averaging_not_by_sampling():
    """Evidence pictures of a 720p camera are scaled to `max_width`: a fine pattern (a
    shirt's stripes, a banner's text) must average to grey, not alias into false bands."""
    import cv2
    import numpy as np

    from recognition.watcher import encode_scene

    stripes = np.zeros((720, 1280, 3), np.uint8)
    stripes[:, 1::2] = 255  # one-pixel stripes
    scaled = cv2.imdecode(np.frombuffer(encode_scene(stripes, 640), np.uint8), cv2.IMREAD_COLOR)
    assert scaled.shape == (360, 640, 3)
    assert abs(float(scaled.mean()) - 127.5) < 4 and float(scaled.std()) < 12, (
        scaled.mean(),
        scaled.std(),
    )
