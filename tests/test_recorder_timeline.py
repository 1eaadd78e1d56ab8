"""RTP timestamps → presentation times: wrap-around, reordering, loss, restarts, drift."""

from __future__ import annotations

from itertools import pairwise

from recorder.timeline import StreamTimeline

CLOCK = 90000
FRAME = 3600  # 25 fps


def feed(timeline: StreamTimeline, frames, ssrc: int = 7):
    """frames: (rtp timestamp, arrival) pairs -> placements."""
    return [timeline.place(ssrc, ts & 0xFFFFFFFF, arrival) for ts, arrival in frames]


def test_anchored_on_arrival_then_driven_by_rtp_time_across_the_32_bit_wrap():
    timeline = StreamTimeline(CLOCK, epoch=100.0)
    start = 2**32 - 5 * FRAME
    frames = [(start + i * FRAME, 100.5 + i * 0.04 + (0.01 if i % 3 else 0)) for i in range(12)]
    placed = feed(timeline, frames)
    assert placed[0].ticks == round(0.5 * CLOCK)  # first frame: when it arrived
    # then exactly the sender's spacing (arrival jitter ignored), through the wrap
    assert [p.ticks - placed[0].ticks for p in placed] == [i * FRAME for i in range(12)]
    assert not any(p.new_source for p in placed)


def test_a_loss_leaves_a_gap_of_the_right_length():
    timeline = StreamTimeline(CLOCK, epoch=0.0)
    kept = [0, 1, 2, 6, 7]  # frames 3-5 were lost
    placed = feed(timeline, [(i * FRAME, i * 0.04) for i in kept])
    assert [p.ticks for p in placed] == [i * FRAME for i in kept]


def test_a_small_step_back_is_clamped_so_times_only_increase():
    timeline = StreamTimeline(CLOCK, epoch=0.0)
    placed = feed(timeline, [(0, 0.0), (FRAME, 0.04), (FRAME - 100, 0.05), (2 * FRAME, 0.08)])
    ticks = [p.ticks for p in placed]
    assert ticks == [0, FRAME, FRAME + 90, 2 * FRAME]  # a millisecond later (WebM's unit)
    assert timeline.clamped == 1 and not any(p.new_source for p in placed)


def test_a_publisher_restart_is_a_new_source_later_in_time():
    timeline = StreamTimeline(CLOCK, epoch=0.0)
    before = feed(timeline, [(1000 + i * FRAME, i * 0.04) for i in range(25)])
    # same SSRC, timestamps restarted from a random base after a 2 s pause
    after = feed(timeline, [(77_000_000 + i * FRAME, 3.0 + i * 0.04) for i in range(5)])
    assert after[0].new_source and not any(p.new_source for p in after[1:])
    assert after[0].ticks == 3 * CLOCK  # re-anchored where it arrived
    assert after[0].ticks > before[-1].ticks
    # a new SSRC is a new source too, and a big step back in RTP time is not clamped
    other = timeline.place(99, 5, 3.3)
    assert other.new_source and other.ticks > after[-1].ticks
    back = timeline.place(99, (5 - 10 * CLOCK) & 0xFFFFFFFF, 3.34)
    assert back.new_source and back.ticks > other.ticks
    assert timeline.sources == 4


def test_a_pause_with_consistent_timestamps_and_clock_drift_are_not_restarts():
    timeline = StreamTimeline(CLOCK, epoch=0.0)
    # 40 s of silence (camera paused) whose RTP time kept running
    placed = feed(timeline, [(0, 0.0), (FRAME, 0.04), (40 * CLOCK, 40.0)])
    assert not any(p.new_source for p in placed)
    # the sender's clock 200 ppm slow for 3 hours, one frame a second
    timeline = StreamTimeline(CLOCK, epoch=0.0)
    drift = feed(timeline, [(round(t * CLOCK * (1 - 200e-6)), t) for t in range(3 * 3600)])
    assert not any(p.new_source for p in drift)


def test_a_late_first_frame_settles_back_onto_the_soonest_so_audio_and_video_meet():
    # captured together at t=1.0: audio arrives at once, the video keyframe 300 ms late
    # (the encoder's slow first frame), the video frames after it on time again
    audio = StreamTimeline(48000, epoch=1.0)
    video = StreamTimeline(CLOCK, epoch=1.0)
    audio_placed = feed(audio, [(i * 960, 1.0 + i * 0.02) for i in range(150)])
    late = [(0, 1.3), (FRAME, 1.31), (2 * FRAME, 1.32)]  # a burst, then on time
    video_placed = feed(video, [*late, *((i * FRAME, 1.0 + i * 0.04) for i in range(3, 75))])
    # once past the burst, both streams put capture time t at t - 1.0
    assert [p.ticks for p in video_placed[9:]] == [i * FRAME for i in range(9, 75)]
    assert audio_placed[-1].ticks == 149 * 960
    assert video.clamped == 6  # the on-time frames captured during the burst
    # what came before is kept, in order, and nothing is a new source
    ticks = [p.ticks for p in video_placed]
    assert ticks == sorted(set(ticks)) and not any(p.new_source for p in video_placed)


def test_once_settled_a_sooner_frame_is_jitter_not_a_new_anchor():
    video = StreamTimeline(CLOCK, epoch=0.0, settle_s=1.0)
    placed = feed(video, [(i * FRAME, 0.2 + i * 0.04) for i in range(50)])
    early = video.place(7, 50 * FRAME, 0.2 + 50 * 0.04 - 0.1)  # 100 ms early, 2 s in
    assert [p.ticks for p in placed] == [round(0.2 * CLOCK) + i * FRAME for i in range(50)]
    assert early.ticks == round(0.2 * CLOCK) + 50 * FRAME


def test_a_settling_anchor_never_puts_two_frames_in_one_millisecond():
    # a keyframe 33 ms late, the next frame 0.1 ms behind it: settling moves the anchor
    # back 32.9 ms, which would place the second frame 9 ticks (0.1 ms) after the first,
    # and WebM, counting milliseconds, would store both at the same time (a CI run's
    # "non-monotonic DTS" in a browser's recording)
    for clock, step in ((CLOCK, 2970), (48000, 960)):
        timeline = StreamTimeline(clock, epoch=0.0)
        placed = feed(timeline, [(0, 1.0), (step, 1.0001), (2 * step, 1.0002)])
        ticks = [p.ticks for p in placed]
        millisecond = clock // 1000
        assert all(b - a >= millisecond for a, b in pairwise(ticks)), ticks
        # and a new source is never placed within a millisecond of the last frame either
        restarted = timeline.place(99, 5, 0.5)
        assert restarted.new_source and restarted.ticks - ticks[-1] >= millisecond
