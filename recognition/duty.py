"""Duty attendance from a duty-room camera: the meeting's face pipeline, sampled sparsely,
turned into sightings (a cadre in view from a first to a last moment).

A duty camera is watched all day, so it is sampled the cheap way: one keyframe every
`burst_every_s` (the watcher's patrol with a burst of one frame), sooner
(`quick_every_s`) while a new face is undecided, so that an arrival is decided in
seconds. Tracks outlive the gaps between samples (`track_timeout_s`), so a cadre sitting
at the desk is one decided track, looked at each sample and embedded again every
`recheck_every_s`: their steady cost is a detection per sample.

`DutyPipeline.process` gives, besides the pipeline's decisions, one `Seen` per cadre in
view:
- the first `Seen` of a sighting comes with the sign-in decision (the full rule: three
  samples, the threshold and the margin, and the liveness check), with its evidence;
- later ones extend it; every `evidence_every_s` one carries fresh evidence (the face
  and the scene), so the last sighting of the day carries the clock-out's;
- a cadre not in view for `sighting_gap_s` ends the sighting, and is forgotten by the
  pipeline: coming back, they are decided again in full, liveness included (a photo of a
  cadre who left cannot extend their day).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import FaceEngine, align
from .gallery import Gallery
from .pipeline import FacePipeline, RecognitionSettings, Rejected, Seen, SignIn, _jpeg
from .watcher import SamplingSettings, encode_scene


@dataclass(frozen=True)
class DutySettings:
    sighting_gap_s: float = 180.0  # out of view longer than this: the sighting is over
    evidence_every_s: float = 300.0  # a sighting's latest evidence is refreshed this often
    scene_max_width: int = 960


# a duty camera's sampling: one keyframe each 6 s, each one (1 s) while a new face is
# undecided (the watcher's patrol with a one-frame burst, from the start)
DUTY_SAMPLING = SamplingSettings(
    signin_window_s=0.0,
    burst_every_s=6.0,
    burst_s=0.001,
    quick_every_s=1.0,
    snapshot_every_s=1800.0,
)
# tracks live across samples; a cadre at the desk is checked by embedding once a minute
DUTY_RECOGNITION = RecognitionSettings(track_timeout_s=20.0, recheck_every_s=60.0)


@dataclass
class _Open:
    first_t: float
    last_t: float
    evidence_t: float


class DutyPipeline(FacePipeline):
    def __init__(
        self,
        engine: FaceEngine,
        gallery: Gallery,
        settings: RecognitionSettings | None = None,
        duty: DutySettings | None = None,
    ) -> None:
        super().__init__(engine, gallery, settings or DUTY_RECOGNITION)
        self.duty = duty or DutySettings()
        self.open: dict[str, _Open] = {}  # cadres in a sighting now

    def process(self, bgr: np.ndarray, t: float) -> list[SignIn | Rejected | Seen]:
        decisions: list[SignIn | Rejected | Seen] = list(super().process(bgr, t))
        seen: list[Seen] = []
        scene: bytes | None = None

        def scene_jpeg() -> bytes:
            nonlocal scene
            if scene is None:
                scene = encode_scene(bgr, self.duty.scene_max_width)
            return scene

        arrived = set()
        for decision in decisions:
            if isinstance(decision, SignIn):
                arrived.add(decision.member)
                self.open[decision.member] = _Open(t, t, t)
                seen.append(
                    Seen(
                        decision.member,
                        t,
                        True,
                        decision.similarity,
                        decision.face_jpeg,
                        scene_jpeg(),
                    )
                )
        for track in self.tracks:
            member = track.identity
            if member is None or track.last_seen != t or member in arrived:
                continue
            arrived.add(member)  # one Seen per cadre, whatever their tracks
            sighting = self.open.get(member)
            first = sighting is None  # decided before this sampler knew (a gallery change)
            if sighting is None:
                sighting = self.open[member] = _Open(t, t, -1e9)
            sighting.last_t = t
            if t - sighting.evidence_t >= self.duty.evidence_every_s:
                sighting.evidence_t = t
                face = _jpeg(align(bgr, track.face))
                seen.append(Seen(member, t, first, None, face, scene_jpeg()))
            else:
                seen.append(Seen(member, t, first, None, b"", b""))
        for member, sighting in tuple(self.open.items()):
            if t - sighting.last_t > self.duty.sighting_gap_s:
                del self.open[member]
                self.signed_in.discard(member)  # back later: decided again in full
                for track in self.tracks:
                    if track.identity == member:
                        self.tracks.remove(track)
                        break
        return [*decisions, *seen]
