"""From sampled frames to sign-ins: detect, track, embed a few times, decide, check liveness.

One `FacePipeline` per camera stream. Each sampled frame is searched for faces; a face is
matched to a track of the previous frames by overlap, so a person is embedded a few times
(at most every `embed_every_s`, at most `max_samples` times), not on every frame. A track
is decided once it holds `min_samples` embeddings: the median over its samples of the
similarity to each expected member (a member's best enrolment photo per sample); the best
member signs in when that median reaches `match_threshold` **and** beats the second-best
member by `margin`. A track that reaches `max_samples` undecided is an unknown face.

Liveness (temporal): the aligned crops of a live face change between samples (blinks,
speech, expression, the head turning), while a still picture held up to the camera gives
the same aligned crop every time, up to codec noise. A track whose crops barely change is
refused as a still picture. This stops a printed photo or a phone screen held still; it
does not stop a photo bent or tilted about, or a video replayed on a screen.

The pipeline is synchronous and CPU-bound: the server runs it in a worker pool.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from .engine import DetectedFace, FaceEngine, align
from .gallery import Gallery

LIVENESS_CROP = 48


@dataclass(frozen=True)
class RecognitionSettings:
    match_threshold: float = 0.37  # median cosine similarity to sign in (SFace)
    margin: float = 0.10  # over the second-best expected member
    min_samples: int = 3  # embeddings of a track before a decision
    max_samples: int = 6  # a track undecided after this many is an unknown face
    embed_every_s: float = 0.3  # a track is embedded at most this often
    min_face_px: int = 40  # smaller faces are tracked but not embedded
    track_iou: float = 0.2  # overlap that continues a track
    track_timeout_s: float = 3.0  # a track not seen for this long is over
    liveness: bool = True
    # median change of the aligned crop between samples (0-1 scale) a live face shows
    liveness_min_change: float = 0.035


@dataclass
class SignIn:
    member: str
    t: float
    similarity: float
    face_jpeg: bytes
    scene_jpeg: bytes


@dataclass
class Rejected:
    """A track that was decided against: a stranger, or a still picture."""

    reason: Literal["unknown", "still_picture"]
    t: float
    face_jpeg: bytes
    best_member: str | None
    similarity: float


@dataclass
class Track:
    id: int
    face: DetectedFace
    last_seen: float
    last_embedded: float = -1e9
    embeddings: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)  # for the liveness check
    best_crop: np.ndarray | None = None
    best_size: float = 0.0
    decided: bool = False


class FacePipeline:
    def __init__(
        self,
        engine: FaceEngine,
        gallery: Gallery,
        settings: RecognitionSettings | None = None,
    ) -> None:
        if gallery.model_id != engine.model_id:
            raise ValueError(
                f"the gallery was enrolled with {gallery.model_id}, the engine is "
                f"{engine.model_id}: enrol again"
            )
        self.engine = engine
        self.gallery = gallery
        self.settings = settings or RecognitionSettings()
        self.tracks: list[Track] = []
        self.signed_in: set[str] = set()
        self.unknown_faces = 0
        self.still_pictures = 0
        self.faces_embedded = 0
        self._ids = itertools.count(1)

    def process(self, bgr: np.ndarray, t: float) -> list[SignIn | Rejected]:
        """Feed one sampled frame (BGR) taken at `t` seconds; what was decided."""
        settings = self.settings
        faces = self.engine.detect(bgr)
        self.tracks = [tr for tr in self.tracks if t - tr.last_seen <= settings.track_timeout_s]
        to_embed: list[tuple[Track, np.ndarray]] = []
        unmatched = list(self.tracks)
        for face in faces:
            track = max(unmatched, key=lambda tr: tr.face.iou(face), default=None)
            if track is None or track.face.iou(face) < settings.track_iou:
                track = Track(next(self._ids), face, t)
                self.tracks.append(track)
            else:
                unmatched.remove(track)
            track.face, track.last_seen = face, t
            if (
                track.decided
                or face.size < settings.min_face_px
                or t - track.last_embedded < settings.embed_every_s
            ):
                continue
            crop = align(bgr, face)
            track.last_embedded = t
            if face.size > track.best_size:
                track.best_size, track.best_crop = face.size, crop
            to_embed.append((track, crop))
        if to_embed:
            vectors = self.engine.embed([crop for _, crop in to_embed])
            self.faces_embedded += len(to_embed)
            for (track, crop), vector in zip(to_embed, vectors, strict=True):
                track.embeddings.append(vector)
                track.crops.append(_liveness_crop(crop))
        decisions: list[SignIn | Rejected] = []
        for track, _ in to_embed:
            decision = self._decide(track, bgr, t)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _decide(self, track: Track, bgr: np.ndarray, t: float) -> SignIn | Rejected | None:
        settings = self.settings
        if len(track.embeddings) < settings.min_samples:
            if self._clearly_signed_in(track):
                # someone signed in already, sitting there: no more embeddings for them
                # (a patrol burst would otherwise embed everyone in the room again)
                track.decided = True
            return None
        ranking = self.gallery.rank(np.stack(track.embeddings))
        best_member, best = ranking[0] if ranking else (None, 0.0)
        second = ranking[1][1] if len(ranking) > 1 else -1.0
        matched = best >= settings.match_threshold and best - second >= settings.margin
        if matched and best_member in self.signed_in:
            track.decided = True  # already signed in: nothing more to do for this face
            return None
        if matched and settings.liveness and not self.looks_alive(track):
            if len(track.embeddings) < settings.max_samples:
                return None  # maybe it moves in the next samples
            track.decided = True
            self.still_pictures += 1
            return Rejected("still_picture", t, _jpeg(track.best_crop), best_member, best)
        if matched:
            track.decided = True
            self.signed_in.add(best_member)
            return SignIn(best_member, t, round(best, 4), _jpeg(track.best_crop), _jpeg(bgr))
        if len(track.embeddings) >= settings.max_samples:
            track.decided = True
            self.unknown_faces += 1
            return Rejected("unknown", t, _jpeg(track.best_crop), best_member, best)
        return None

    def _clearly_signed_in(self, track: Track) -> bool:
        """One sample is enough to recognise a member already signed in (never to sign
        one in): their best similarity clears the threshold and the margin."""
        if not self.signed_in:
            return False
        ranking = self.gallery.rank(np.stack(track.embeddings))
        if not ranking or ranking[0][0] not in self.signed_in:
            return False
        second = ranking[1][1] if len(ranking) > 1 else -1.0
        best = ranking[0][1]
        return best >= self.settings.match_threshold and best - second >= self.settings.margin

    def looks_alive(self, track: Track) -> bool:
        return liveness_change(track.crops) >= self.settings.liveness_min_change


def liveness_change(crops: list[np.ndarray]) -> float:
    """The median change between consecutive aligned crops (mean absolute difference of
    contrast-normalised pixels, on a 0-1 scale)."""
    if len(crops) < 2:
        return 0.0
    changes = [float(np.mean(np.abs(a - b))) for a, b in itertools.pairwise(crops)]
    return float(np.median(changes))


def _liveness_crop(crop: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    # the inner face only (eyes, nose, mouth): the background around a head moves anyway
    inner = grey[16:104, 20:92]
    small = cv2.resize(inner, (LIVENESS_CROP, LIVENESS_CROP), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    small = (small - small.mean()) / (small.std() + 1e-6)
    return small / 4.0  # about 0-1 for the differences


def _jpeg(image: np.ndarray | None, quality: int = 85) -> bytes:
    if image is None:
        return b""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else b""
