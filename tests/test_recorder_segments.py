"""Segment files: cut at keyframes, each playable alone, together covering the recording."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from recorder.probe import probe_segment
from recorder.segments import ClosedSegment, Segmenter, mime_type
from recorder.worker import FileWorker
from sfu.media.depacketize import Frame, depacketizer_for
from sfu.media.reorder import Ordered

from recorder_support import decode_all, encode_opus, encode_video, packetize

FPS = 25
VIDEO_STEP = 90000 // FPS
MIME = {"vp8": "video/VP8", "h264": "video/H264"}


def video_frames(codec: str, count: int, **kwargs) -> list[Frame]:
    encoded = encode_video(codec, count, keyframe_every=2 * FPS, **kwargs)
    depacketizer = depacketizer_for(MIME[codec])
    frames = []
    for packet in packetize(codec, [f.data for f in encoded]):
        frames += depacketizer.push(Ordered(packet, 0.0, 0))
    assert len(frames) == count
    return frames


def audio_frames(count: int) -> list[Frame]:
    depacketizer = depacketizer_for("audio/opus")
    frames = []
    for packet in packetize("opus", encode_opus(count), step=960):
        frames += depacketizer.push(Ordered(packet, 0.0, 0))
    return frames


class Recording:
    """A Segmenter writing inline into a temporary directory."""

    def __init__(self, root: Path, kinds=("video", "audio"), worker=None, **kwargs) -> None:
        self.root = root
        self.closed: list[ClosedSegment] = []
        self.segmenter = Segmenter(
            worker or FileWorker(threaded=False),
            kinds,
            lambda seq, start, container: root / f"{seq:04d}-{start:07.3f}.{container}",
            lambda seq, start: {"lighthouse_sequence": str(seq), "title": "红星村"},
            self.closed.append,
            **kwargs,
        )

    def feed(self, timed: list[tuple[float, str, Frame, bool]]) -> None:
        """(time s, kind, frame, new source), pushed in time order as the interleaver would."""
        for time_s, kind, frame, new_source in sorted(timed, key=lambda t: t[0]):
            clock = 90000 if kind == "video" else 48000
            self.segmenter.push(kind, frame, round(time_s * clock), clock, new_source)


def timed(frames, start_s: float, step_s: float, kind: str, new_source_at: int = -1):
    return [(start_s + i * step_s, kind, f, i == new_source_at) for i, f in enumerate(frames)]


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_segments_start_at_keyframes_play_alone_and_tile_the_recording(tmp_path, codec):
    video = video_frames(codec, 26 * FPS)  # keyframes every 2 s
    audio = audio_frames(50 * 26 + 15)  # audio begins 0.3 s before the first keyframe
    recording = Recording(tmp_path, segment_s=5.0)
    recording.feed(timed(video, 1.0, 1 / FPS, "video") + timed(audio, 0.7, 0.02, "audio"))
    recording.segmenter.close()

    closed = recording.closed
    assert [c.sequence for c in closed] == [0, 1, 2, 3, 4]
    # cut at the first keyframe 5 s into each file: 6 s of video each, the first with
    # the audio that came before the video
    assert [round(c.start_s, 3) for c in closed] == [0.7, 7.0, 13.0, 19.0, 25.0]
    for before, after in itertools.pairwise(closed):
        assert 0 <= before.end_s - after.start_s <= 0.02  # the last audio frame may overhang
    assert closed[-1].end_s == pytest.approx(27.0, abs=0.02)
    container = {"vp8": "webm", "h264": "mp4"}[codec]
    for segment in closed:
        assert segment.ok and segment.path.suffix == f".{container}" and segment.size > 1000
        assert segment.kinds == ("video", "audio")
        probed = probe_segment(segment.path)
        assert probed.complete and probed.tags["lighthouse_sequence"] == str(segment.sequence)
        assert probed.tags["title"] == "红星村"
        assert probed.duration_s == pytest.approx(segment.end_s - segment.start_s, abs=0.03)
        assert all(s.monotonic for s in probed.streams.values())
        assert probed.streams["audio"].start_s == pytest.approx(0.0, abs=0.001)
        # every file decodes on its own, from its first frame
        pictures, samples = decode_all(segment.path)
        assert len(pictures) == probed.streams["video"].packets
        assert samples == pytest.approx(48000 * (segment.end_s - segment.start_s), rel=0.01)
    assert closed[0].codecs[0] == ("vp8" if codec == "vp8" else closed[0].config.codec_string)
    assert mime_type("webm", ["vp8", "opus"]) == 'video/webm; codecs="vp8, opus"'


def test_a_new_picture_size_or_source_starts_a_new_file_at_its_keyframe(tmp_path):
    small = video_frames("h264", 60)  # 320x180, keyframes at 0 and 50
    large = video_frames("h264", 60, width=640, height=360)
    recording = Recording(tmp_path, kinds=("video",), segment_s=60.0)
    # 1.0 s in, the encoder switches to 640x360 (its first frame is a keyframe);
    # 3.0 s in, the source restarts (flagged by the timeline) and the cut waits for a keyframe
    recording.feed(timed(small[:25], 0.0, 1 / FPS, "video"))
    recording.feed(timed(large[:40], 1.0, 1 / FPS, "video"))
    restarted = timed(small[10:60], 3.0, 1 / FPS, "video", new_source_at=0)
    recording.feed(restarted[:40])
    assert recording.segmenter.wants_keyframe  # the restarted source has sent none yet
    recording.feed(restarted[40:])
    assert not recording.segmenter.wants_keyframe
    recording.segmenter.close()
    sizes = [(c.config.width, c.config.height) for c in recording.closed]
    assert sizes == [(320, 180), (640, 360), (320, 180)]
    assert [round(c.start_s, 2) for c in recording.closed] == [0.0, 1.0, 4.6]
    for segment in recording.closed:
        pictures, _ = decode_all(segment.path)
        assert {(p.width, p.height) for p in pictures} == {
            (segment.config.width, segment.config.height)
        }


def test_audio_alone_when_video_never_comes_then_a_new_file_when_it_does(tmp_path):
    audio = audio_frames(50 * 8)
    video = video_frames("vp8", 2 * FPS)
    recording = Recording(tmp_path, segment_s=10.0, start_wait_s=2.0)
    # the camera starts 5 s after the microphone
    recording.feed(timed(audio, 0.0, 0.02, "audio") + timed(video, 5.0, 1 / FPS, "video"))
    recording.segmenter.close()
    first, second = recording.closed
    assert first.kinds == ("audio",) and first.path.suffix == ".webm"
    assert first.start_s == 0.0 and 5.0 <= first.end_s <= 5.02
    assert second.kinds == ("video", "audio") and second.start_s == 5.0
    _, samples = decode_all(first.path)
    assert samples == round(first.end_s * 50) * 960


class CloggedWorker(FileWorker):
    """A file worker whose disk can be made to fall behind."""

    clogged = False

    @property
    def backlog_bytes(self) -> int:
        return 1 << 40 if self.clogged else 0


def test_a_disk_that_falls_behind_ends_the_file_and_the_next_starts_at_a_keyframe(tmp_path):
    video = video_frames("vp8", 6 * FPS)  # keyframes at 0, 2, 4 s
    worker = CloggedWorker(threaded=False)
    recording = Recording(tmp_path, kinds=("video",), worker=worker, segment_s=60.0)
    recording.feed(timed(video[:25], 0.0, 1 / FPS, "video"))
    worker.clogged = True  # 1.0 s in: what is written so far plays; the rest is dropped
    recording.feed(timed(video[25:35], 1.0, 1 / FPS, "video"))
    worker.clogged = False
    recording.feed(timed(video[35:], 1.4, 1 / FPS, "video"))
    recording.segmenter.close()
    first, second = recording.closed
    assert recording.segmenter.overruns == 1 and recording.segmenter.frames_dropped >= 10
    assert (first.start_s, round(first.end_s, 2)) == (0.0, 1.0)
    assert (second.start_s, round(second.end_s, 2)) == (2.0, 6.0)  # from the next keyframe
    for segment in (first, second):
        pictures, _ = decode_all(segment.path)
        assert len(pictures) == round((segment.end_s - segment.start_s) * FPS)


def test_a_restart_first_seen_on_a_dropped_frame_still_starts_a_new_file(tmp_path):
    video = video_frames("vp8", 3 * FPS)  # keyframes at 0 and 2 s
    recording = Recording(tmp_path, kinds=("video",), segment_s=60.0)
    recording.feed(timed(video[:25], 0.0, 1 / FPS, "video"))
    # the new source's first frame was incomplete: only its time and the restart arrive
    dropped = Frame(b"", 0, 1, 0.0, False, dropped=True)
    recording.segmenter.push("video", dropped, 90000, 90000, True)
    recording.feed(timed(video[26:], 1.04, 1 / FPS, "video"))
    recording.segmenter.close()
    assert [round(c.start_s, 2) for c in recording.closed] == [0.0, 2.0]


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_frames_from_before_a_file_began_are_dropped_not_stacked_at_its_start(tmp_path, codec):
    # The interleaver lets a stream that stalled for a second lag behind (a loaded CI
    # machine): audio from before a cut, or a keyframe sooner than the audio that opened
    # a file, then arrives after it. Placed at the file's time 0 they stacked there, and
    # the file's timestamps stepped backwards (a CI run's "non-monotonic" MP4).
    video = video_frames(codec, 6 * FPS)  # keyframes at 0, 2, 4 s (from 1.0 s on)
    audio = audio_frames(50 * 7)
    recording = Recording(tmp_path, segment_s=1.5)
    ordered = sorted(
        timed(video, 1.0, 1 / FPS, "video") + timed(audio, 0.9, 0.02, "audio"),
        key=lambda t: t[0],
    )
    # the first file gathers audio from 0.9 s; a keyframe from 0.85 s comes after it
    first_key = next(i for i, t in enumerate(ordered) if t[1] == "video")
    keyframe = ordered.pop(first_key)
    ordered.insert(3, (0.85, *keyframe[1:]))
    # at the cut at 3.0 s, 5 audio frames from 2.9 s on come after the keyframe
    cut = next(i for i, t in enumerate(ordered) if t[1] == "video" and t[0] == pytest.approx(3.0))
    late = [t for t in ordered[cut - 12 : cut] if t[1] == "audio" and t[0] > 2.89]
    for t in late:
        ordered.remove(t)
    cut = ordered.index(next(t for t in ordered if t[1] == "video" and t[0] == pytest.approx(3.0)))
    ordered[cut + 1 : cut + 1] = late
    for time_s, kind, frame, new_source in ordered:
        clock = 90000 if kind == "video" else 48000
        recording.segmenter.push(kind, frame, round(time_s * clock), clock, new_source)
    recording.segmenter.close()
    assert len(recording.closed) == 3
    for segment in recording.closed:
        probed = probe_segment(segment.path)
        assert all(s.monotonic for s in probed.streams.values()), segment
        assert probed.streams["video"].keyframes >= 1
    assert recording.closed[0].start_s == pytest.approx(0.85)  # the keyframe's, not the audio's
    assert recording.segmenter.frames_dropped >= len(late)
