"""From sampled frames to sign-ins: detect, track, embed a few times, decide, check liveness.

One `FacePipeline` per camera stream. Each sampled frame is searched for faces; a face is
matched to a track of the previous frames by overlap, so a person is embedded a few times
(at most every `embed_every_s`, at most `max_samples` times), not on every frame. A track
is decided once it holds `min_samples` embeddings: the median over its samples of the
similarity to each expected member (a member's best enrolment photo per sample); the best
member signs in when that median reaches `match_threshold` **and** beats the second-best
member by `margin`. A track that reaches `max_samples` undecided is an unknown face.

Liveness (temporal, geometric): a printed photo or a phone screen is flat, and every view of
a flat picture, however it is held, tilted or shaken, is a homography of every other. A head
is not flat: as it turns, nods, speaks or blinks, near parts (the nose) move against far
ones (the cheeks, the ears) in a way no homography explains. So consecutive samples of a
track are registered onto each other with the best homography (ECC on blurred, aligned
crops) and what is left, the residual, is the measure: a picture leaves codec noise only,
whatever the encoder's quality does; a live face leaves its depth. A track that matched a
member but shows no such change waits (a person sitting still signs in when they move),
is reported once as a still picture for review, and never signs in while it stays flat.
It does not stop a 3D mask, a photo bent while shown, or a video replayed on a screen.

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

LIVENESS_SIZE = 56  # pixels of the registered crop


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
    # median residual between consecutive samples once a homography has registered them
    # (0-1 scale): a flat picture leaves codec noise (<= 0.013 measured with every sample
    # at another bitrate, 60-1500 kbit/s), a head turning 14 degrees its depth (>= 0.025)
    liveness_min_residual: float = 0.018


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
    last_sampled: float = -1e9
    embeddings: list[np.ndarray] = field(default_factory=list)
    last_patch: np.ndarray | None = None  # for the liveness check
    residuals: list[float] = field(default_factory=list)  # between consecutive samples
    best_crop: np.ndarray | None = None
    best_size: float = 0.0
    match: tuple[str, float] | None = None  # recognised, waiting to look alive
    embedded_at: float = -1e9  # when the last of `embeddings` was taken
    unconfirmed: int = 0  # live samples since the match that were not clearly the member
    reported_still: bool = False
    decided: bool = False
    samples: int = 0

    def sample_liveness(self, patch: np.ndarray, keep: int) -> None:
        """Register the new sample onto the one before; the last `keep` residuals count."""
        self.samples += 1
        if self.last_patch is not None:
            residual = registered_residual(self.last_patch, patch)
            if residual is not None:
                self.residuals.append(residual)
                del self.residuals[:-keep]
        self.last_patch = patch


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
        sampled: list[Track] = []
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
                or t - track.last_sampled < settings.embed_every_s
            ):
                continue
            crop = align(bgr, face)
            track.last_sampled = t
            if face.size > track.best_size:
                track.best_size, track.best_crop = face.size, crop
            if settings.liveness:
                track.sample_liveness(liveness_patch(crop), settings.max_samples - 1)
            sampled.append(track)
            # a recognised face waiting to look alive needs no embedding until it does;
            # then one, to check it is still the member (not a photo swapped for a face)
            if track.match is None or not settings.liveness or self.looks_alive(track):
                to_embed.append((track, crop))
        if to_embed:
            vectors = self.engine.embed([crop for _, crop in to_embed])
            self.faces_embedded += len(to_embed)
            for (track, _), vector in zip(to_embed, vectors, strict=True):
                track.embeddings.append(vector)
                track.embedded_at = t
        decisions: list[SignIn | Rejected] = []
        for track in sampled:
            decision = self._decide(track, bgr, t)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _decide(self, track: Track, bgr: np.ndarray, t: float) -> SignIn | Rejected | None:
        settings = self.settings
        if track.match is None:
            if len(track.embeddings) < settings.min_samples:
                if self._clearly_signed_in(track):
                    # someone signed in already, sitting there: no more embeddings for them
                    # (a patrol burst would otherwise embed everyone in the room again)
                    track.decided = True
                return None
            best_member, best, clear = self._winner(np.stack(track.embeddings))
            if not clear:
                if len(track.embeddings) >= settings.max_samples:
                    track.decided = True
                    self.unknown_faces += 1
                    return Rejected("unknown", t, _jpeg(track.best_crop), best_member, best)
                return None
            assert best_member is not None  # a clear winner is a member
            if best_member in self.signed_in:
                track.decided = True  # already signed in: nothing more to do for this face
                return None
            track.match = (best_member, best)
        member, similarity = track.match
        if member in self.signed_in:  # another track of theirs signed in meanwhile
            track.decided = True
            return None
        if settings.liveness and not self.looks_alive(track):
            flat = len(track.residuals) >= settings.min_samples - 1  # measured, not failed
            if flat and track.samples >= settings.max_samples and not track.reported_still:
                # flat so far: kept for review once, and still watched (a person sitting
                # very still signs in when they move; a picture never does)
                track.reported_still = True
                self.still_pictures += 1
                return Rejected("still_picture", t, _jpeg(track.best_crop), member, similarity)
            return None
        # The face in front of the camera now must be the member's: the samples that made
        # the match may have been a photo, the movement that made it look alive another
        # face put in its place. A sample that is not clearly theirs waits for the next
        # (one sample is noisier than a median); after `max_samples` such samples the
        # track starts again from its latest faces, so a stranger ends as an unknown face.
        if track.embedded_at != t or not self._ranks_first(track.embeddings[-1], member):
            track.unconfirmed += 1
            if track.unconfirmed >= settings.max_samples:
                track.match, track.unconfirmed = None, 0
                track.embeddings = track.embeddings[-settings.min_samples :]
                track.residuals.clear()
            return None
        track.decided = True
        self.signed_in.add(member)
        return SignIn(member, t, round(similarity, 4), _jpeg(track.best_crop), _jpeg(bgr))

    def _winner(self, samples: np.ndarray) -> tuple[str | None, float, bool]:
        """The best-ranked expected member for these samples, their score, and whether
        it is clear: at least the threshold, and the margin over the second best."""
        ranking = self.gallery.rank(samples)
        if not ranking:
            return None, 0.0, False
        (member, best), second = ranking[0], ranking[1][1] if len(ranking) > 1 else -1.0
        settings = self.settings
        return member, best, best >= settings.match_threshold and best - second >= settings.margin

    def _ranks_first(self, vector: np.ndarray, member: str) -> bool:
        winner, _, clear = self._winner(vector[None])
        return clear and winner == member

    def _clearly_signed_in(self, track: Track) -> bool:
        """One sample is enough to recognise a member already signed in (never to sign
        one in): their best similarity clears the threshold and the margin."""
        if not self.signed_in:
            return False
        winner, _, clear = self._winner(np.stack(track.embeddings))
        return clear and winner in self.signed_in

    def looks_alive(self, track: Track) -> bool:
        if not track.residuals:
            return False
        return float(np.median(track.residuals)) >= self.settings.liveness_min_residual


def liveness_patch(crop: np.ndarray) -> np.ndarray:
    """The aligned crop, grey and blurred (codec noise and blocking are fine detail; a
    head's depth shows at the scale of the nose and the eyes)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    blurred = cv2.GaussianBlur(grey, (0, 0), 3.5)
    return cv2.resize(blurred, (LIVENESS_SIZE, LIVENESS_SIZE), interpolation=cv2.INTER_AREA)


# the inner face (eyes, nose, mouth) of a LIVENESS_SIZE patch: the background moves anyway
_INNER = (slice(8, 52), slice(10, 46))
# 1e-4 converges in a few iterations at this size; 1e-5 runs to the cap at 7x the cost
_ECC_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-4)
# The homography is fitted on the whole aligned crop (mostly face): fitting it on the
# inner face only (ECC's mask) measured far worse, a still photo up to 0.036.


def registered_residual(a: np.ndarray, b: np.ndarray) -> float | None:
    """What is left between two patches once the best homography maps `b` onto `a`;
    None when they do not register."""
    try:
        # opencv's stubs want a mask array with gaussFiltSize; None (no mask) is accepted
        _, homography = cv2.findTransformECC(  # type: ignore[call-overload]
            a, b, np.eye(3, dtype=np.float32), cv2.MOTION_HOMOGRAPHY, _ECC_CRITERIA, None, 3
        )
    except cv2.error:  # no convergence: the pair says nothing either way
        return None
    size = (LIVENESS_SIZE, LIVENESS_SIZE)
    flags = cv2.WARP_INVERSE_MAP
    registered = cv2.warpPerspective(b, homography, size, flags=flags | cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.ones_like(b), homography, size, flags=flags | cv2.INTER_NEAREST)
    mask = valid[_INNER] > 0.5
    if mask.sum() < mask.size // 2:
        return None
    x, y = a[_INNER][mask], registered[_INNER][mask]
    x = (x - x.mean()) / (x.std() + 1e-6)
    y = (y - y.mean()) / (y.std() + 1e-6)
    return float(np.mean(np.abs(x - y))) / 4.0


def _jpeg(image: np.ndarray | None, quality: int = 85) -> bytes:
    if image is None:
        return b""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else b""
