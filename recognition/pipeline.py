"""From sampled frames to sign-ins: detect, track, embed a few times, decide, check liveness.

One `FacePipeline` per camera stream. Each sampled frame is searched for faces; a face is
matched to a track of the previous frames by overlap, so a person is embedded now and
then (at most every `embed_every_s`), not on every frame. A track is decided on its
latest `min_samples` embeddings: the median over them of the similarity to each expected
member (a member's best enrolment photo per sample); the best member signs in when that
median reaches `match_threshold` **and** beats the second-best member by `margin`.

Nobody is given up on while they sit there. A track still undecided after `max_samples`
embeddings is reported once as an unknown face (for review) and goes on being sampled,
at an interval that doubles up to `undecided_max_interval_s` and falls back to the
fastest as soon as one sample alone names a member clearly, so a member whose first
seconds were bad (looking down at the agenda, the camera's exposure settling) still
signs in within a few samples of looking up; its window of samples slides, so the new
good ones replace the bad. Between its embeddings such a track's face is scored on every
sampled frame at the cost of an alignment (sharpness times frontalness, from the
landmarks): a face that became clearly better than any in the window (in focus, lit,
turned to the camera) is embedded at once. The cost is bounded: an undecided face costs
one embedding every `undecided_max_interval_s` once it has been looked at `max_samples`
times, and one more each time it becomes clearly better.

A decided track (its member signed in) is looked at cheaply every `look_every_s` (its
aligned, blurred grey patch against the one of its last check) and checked again (an
embedding) when the face there changed (a normalised correlation below `changed_below`:
the same head turning stays above it, another person's face mostly falls below), and
every `recheck_every_s` anyway. When `split_after` checks in a row are not clearly that
member (someone else took the seat before the track timed out, or two neighbours'
tracks swapped), the track is split: it starts again, undecided, as a new face.

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
import math
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from .engine import DetectedFace, FaceEngine, align
from .gallery import Gallery

LIVENESS_SIZE = 56  # pixels of the registered crop


@dataclass(frozen=True)
class RecognitionSettings:
    match_threshold: float = 0.40  # median cosine similarity to sign in (SFace)
    margin: float = 0.10  # over the second-best expected member
    min_samples: int = 3  # embeddings a decision is made on: a track's latest
    max_samples: int = 6  # undecided after this many: reported as an unknown face
    embed_every_s: float = 0.3  # a track is embedded at most this often
    # an undecided track's interval doubles from embed_every_s up to this
    undecided_max_interval_s: float = 4.0
    recheck_every_s: float = 15.0  # a decided track is embedded again this often anyway
    look_every_s: float = 1.0  # and its face compared with its last check's this often
    # the correlation of those patches below which the face changed (measured on the
    # test faces: the same head turning 14 degrees >= 0.727; 95 % of others' < 0.62)
    changed_below: float = 0.7
    split_after: int = 2  # checks in a row not clearly the member split the track
    # an undecided face this much better than the best in its window is embedded at once
    better_face: float = 1.5
    min_face_px: int = 40  # smaller faces are tracked but not embedded
    track_iou: float = 0.2  # overlap that continues a track
    track_timeout_s: float = 3.0  # a track not seen for this long is over
    new_face_s: float = 20.0  # an undecided face is new this long (`new_face_in_view`)
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
class Seen:
    """A decided member in view at `t` (duty attendance: recognition/duty.py). `first`
    starts a sighting; the pictures are empty when no fresh evidence is due."""

    member: str
    t: float
    first: bool
    similarity: float | None
    face_jpeg: bytes
    scene_jpeg: bytes


@dataclass
class Explanation:
    """Why a track was, or was not, signed in (`python -m recognition evaluate --explain`)."""

    track: int
    first_seen: float
    last_seen: float
    samples: int = 0  # embeddings taken
    best_member: str | None = None  # of the latest decision window
    best: float = 0.0
    second_member: str | None = None
    second: float = 0.0
    decision: str = "undecided"  # signed_in | already_signed_in | unknown | still_picture | split
    rule: str = "fewer samples than a decision needs"
    # the median residual between its samples (liveness: a picture's stays below the limit)
    liveness: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "track": self.track,
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
            "samples": self.samples,
            "best_member": self.best_member,
            "best": round(self.best, 4),
            "second_member": self.second_member,
            "second": round(self.second, 4),
            "decision": self.decision,
            "rule": self.rule,
            "liveness": None if self.liveness is None else round(self.liveness, 4),
        }


@dataclass
class Track:
    id: int
    face: DetectedFace
    last_seen: float
    first_seen: float = 0.0
    last_sampled: float = -1e9
    embeddings: list[np.ndarray] = field(default_factory=list)
    qualities: list[float] = field(default_factory=list)  # of the embedded faces
    last_patch: np.ndarray | None = None  # for the liveness check
    residuals: list[float] = field(default_factory=list)  # between consecutive samples
    best_crop: np.ndarray | None = None
    best_size: float = 0.0
    match: tuple[str, float] | None = None  # recognised, waiting to look alive
    embedded_at: float = -1e9  # when the last of `embeddings` was taken
    unconfirmed: int = 0  # live samples since the match that were not clearly the member
    reported_still: bool = False
    reported_unknown: bool = False
    # decided: its member (signed in by it, or before it); checked every recheck_every_s
    identity: str | None = None
    mismatches: int = 0  # checks in a row not clearly `identity`
    identity_patch: np.ndarray | None = None  # the face at its last good check
    sample_patch: np.ndarray | None = None  # the face of its latest sample
    looked_at: float = -1e9
    interval_s: float = 0.0  # between its embeddings now (0: embed_every_s)
    samples: int = 0
    explanation: Explanation | None = None

    @property
    def decided(self) -> bool:
        return self.identity is not None

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
        self.splits = 0
        # an undecided face came into view lately (a sparse sampler samples faster)
        self.new_face_in_view = False
        # every track's explanation, in the order tracks began (kept only when asked)
        self.explanations: list[Explanation] | None = None
        self._ids = itertools.count(1)

    def explain(self) -> list[dict[str, object]]:
        """Per track: its samples, the latest decision window's best and second-best
        member, and what was decided by which rule (start with `explaining()`)."""
        return [e.as_dict() for e in self.explanations or []]

    def explaining(self) -> FacePipeline:
        self.explanations = []
        return self

    def _new_track(self, face: DetectedFace, t: float) -> Track:
        track = Track(next(self._ids), face, t, first_seen=t)
        if self.explanations is not None:
            track.explanation = Explanation(track.id, t, t)
            self.explanations.append(track.explanation)
        self.tracks.append(track)
        return track

    def _interval(self, track: Track) -> float:
        settings = self.settings
        if track.decided:
            # a check that failed is followed at once by the next: a swap splits fast
            return settings.embed_every_s if track.mismatches else settings.recheck_every_s
        return max(track.interval_s, settings.embed_every_s)

    def process(self, bgr: np.ndarray, t: float) -> list[SignIn | Rejected | Seen]:
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
                track = self._new_track(face, t)
            else:
                unmatched.remove(track)
            track.face, track.last_seen = face, t
            if track.explanation is not None:
                track.explanation.last_seen = t
            if face.size < settings.min_face_px or t - track.last_sampled < settings.embed_every_s:
                continue
            crop = None
            quality = 0.0
            if track.decided:
                if t - track.last_sampled < self._interval(track):
                    # between checks, the cheap look: has the face there changed?
                    if t - track.looked_at < settings.look_every_s:
                        continue
                    track.looked_at = t
                    crop = align(bgr, face)
                    patch = liveness_patch(crop)
                    if (
                        track.identity_patch is None
                        or patch_similarity(patch, track.identity_patch) >= settings.changed_below
                    ):
                        continue
                if crop is None:
                    crop = align(bgr, face)
                    patch = liveness_patch(crop)
                track.last_sampled = t
                track.sample_patch = patch
                sampled.append(track)
                to_embed.append((track, crop))
                continue
            if t - track.last_sampled < self._interval(track):
                if not track.qualities:
                    continue
                # between samples, the cheap look: a clearly better face is taken now
                crop = align(bgr, face)
                quality = face_quality(face, crop)
                if quality < settings.better_face * max(track.qualities):
                    continue
                track.interval_s = 0.0
            if crop is None:
                crop = align(bgr, face)
                quality = face_quality(face, crop)
            track.last_sampled = t
            track.sample_patch = liveness_patch(crop)
            if face.size > track.best_size:
                track.best_size, track.best_crop = face.size, crop
            if settings.liveness:
                track.sample_liveness(track.sample_patch, settings.max_samples - 1)
            sampled.append(track)
            # a recognised face waiting to look alive needs no embedding until it does;
            # then one, to check it is still the member (not a photo swapped for a face)
            if track.match is None or not settings.liveness or self.looks_alive(track):
                to_embed.append((track, crop))
                track.qualities.append(quality)
                del track.qualities[: -settings.max_samples]
        if to_embed:
            vectors = self.engine.embed([crop for _, crop in to_embed])
            self.faces_embedded += len(to_embed)
            for (track, _), vector in zip(to_embed, vectors, strict=True):
                track.embeddings.append(vector)
                del track.embeddings[: -settings.max_samples]  # the window slides
                track.embedded_at = t
                if track.explanation is not None:
                    track.explanation.samples += 1
        decisions: list[SignIn | Rejected | Seen] = []
        for track in sampled:
            if track.decided:
                self._recheck(track, t)
                continue
            decision = self._decide(track, bgr, t)
            if decision is not None:
                decisions.append(decision)
        self.new_face_in_view = any(
            not track.decided
            and track.last_seen == t
            and t - track.first_seen < settings.new_face_s
            and track.face.size >= settings.min_face_px
            for track in self.tracks
        )
        return decisions

    def _recheck(self, track: Track, t: float) -> None:
        """A decided track's new sample: still its member, or split (someone else sits
        there now)."""
        assert track.identity is not None
        if track.embedded_at != t:
            return
        if self._ranks_first(track.embeddings[-1], track.identity):
            track.mismatches = 0
            track.identity_patch = track.sample_patch
            return
        track.mismatches += 1
        if track.mismatches < self.settings.split_after:
            return
        self.splits += 1
        if track.explanation is not None:
            track.explanation.decision = "split"
            track.explanation.rule = (
                f"{track.mismatches} checks in a row not clearly {track.identity}: "
                "a new face in its place"
            )
        self.tracks.remove(track)
        fresh = self._new_track(track.face, t)
        fresh.embeddings = track.embeddings[-1:]  # the sample that showed the change
        fresh.embedded_at = t
        fresh.last_sampled = t
        if fresh.explanation is not None:
            fresh.explanation.samples = 1

    def _explain(self, track: Track, ranking: list[tuple[str, float]]) -> None:
        explanation = track.explanation
        if explanation is None or not ranking:
            return
        explanation.best_member, explanation.best = ranking[0]
        if len(ranking) > 1:
            explanation.second_member, explanation.second = ranking[1]
        else:
            explanation.second_member, explanation.second = None, -1.0

    def _settle(self, track: Track, decision: str, rule: str) -> None:
        if track.explanation is not None:
            track.explanation.decision, track.explanation.rule = decision, rule
            if track.residuals:
                track.explanation.liveness = float(np.median(track.residuals))

    def _decide(self, track: Track, bgr: np.ndarray, t: float) -> SignIn | Rejected | None:
        settings = self.settings
        if track.match is None:
            if len(track.embeddings) < settings.min_samples:
                if self._clearly_signed_in(track):
                    # someone signed in already, sitting there: checked now and then only
                    # (a patrol burst would otherwise embed everyone in the room again)
                    track.identity = self._winner(np.stack(track.embeddings))[0]
                    track.identity_patch = track.sample_patch
                    self._settle(
                        track, "already_signed_in", "one clear sample of a member signed in"
                    )
                return None
            window = np.stack(track.embeddings[-settings.min_samples :])
            ranking = self.gallery.rank(window)
            self._explain(track, ranking)
            best_member, best, clear = self._winner(window, ranking)
            if not clear:
                # after max_samples, look less and less often; at once again when one
                # sample alone names a member clearly (the face has come clear)
                promising = track.embedded_at == t and self._winner(track.embeddings[-1][None])[2]
                if promising or len(track.embeddings) < settings.max_samples:
                    track.interval_s = 0.0
                else:
                    track.interval_s = min(
                        settings.undecided_max_interval_s,
                        2 * max(track.interval_s, settings.embed_every_s),
                    )
                self._settle(track, "undecided", self._why_not(best, ranking))
                if len(track.embeddings) >= settings.max_samples and not track.reported_unknown:
                    track.reported_unknown = True  # for review; it is still looked at
                    self.unknown_faces += 1
                    self._settle(track, "unknown", self._why_not(best, ranking))
                    return Rejected("unknown", t, _jpeg(track.best_crop), best_member, best)
                return None
            assert best_member is not None  # a clear winner is a member
            if best_member in self.signed_in:
                track.identity = best_member  # already signed in: checked now and then
                track.identity_patch = track.sample_patch
                self._settle(track, "already_signed_in", f"{best_member} was signed in before")
                return None
            track.match = (best_member, best)
        member, similarity = track.match
        if member in self.signed_in:  # another track of theirs signed in meanwhile
            track.identity = member
            track.identity_patch = track.sample_patch
            self._settle(track, "already_signed_in", f"{member} was signed in before")
            return None
        if settings.liveness and not self.looks_alive(track):
            flat = len(track.residuals) >= settings.min_samples - 1  # measured, not failed
            self._settle(track, "undecided", f"matched {member}; waiting to look alive")
            if flat and track.samples >= settings.max_samples and not track.reported_still:
                # flat so far: kept for review once, and still watched (a person sitting
                # very still signs in when they move; a picture never does)
                track.reported_still = True
                self.still_pictures += 1
                self._settle(track, "still_picture", f"matched {member}; no depth moved")
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
        track.identity = member
        track.identity_patch = track.sample_patch
        self.signed_in.add(member)
        self._settle(
            track,
            "signed_in",
            f"median {similarity:.3f} >= {settings.match_threshold} and "
            f"{settings.margin} over the second",
        )
        return SignIn(member, t, round(similarity, 4), _jpeg(track.best_crop), _jpeg(bgr))

    def _why_not(self, best: float, ranking: list[tuple[str, float]]) -> str:
        settings = self.settings
        if not ranking:
            return "nobody is expected here"
        if best < settings.match_threshold:
            return f"median {best:.3f} below the threshold {settings.match_threshold}"
        second = ranking[1][1] if len(ranking) > 1 else -1.0
        return (
            f"median {best:.3f} only {best - second:.3f} over the second (margin {settings.margin})"
        )

    def _winner(
        self, samples: np.ndarray, ranking: list[tuple[str, float]] | None = None
    ) -> tuple[str | None, float, bool]:
        """The best-ranked expected member for these samples, their score, and whether
        it is clear: at least the threshold, and the margin over the second best."""
        if ranking is None:
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


def face_quality(face: DetectedFace, crop: np.ndarray) -> float:
    """How clear a face is, to compare the views of one track: the aligned crop's
    sharpness (the variance of its Laplacian: out of focus, blurred by motion or too dark
    is low) times how frontal the landmarks are (turned away, looking down at the
    agenda is low). A relative measure only: its scale differs between cameras."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks.astype(np.float32)
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    eye_distance = float(np.linalg.norm(right_eye - left_eye)) + 1e-6
    yaw = float(nose[0] - (eyes[0] + mouth[0]) / 2) / eye_distance
    pitch = float(nose[1] - eyes[1]) / (float(mouth[1] - eyes[1]) + 1e-6)
    # the aligned template's nose sits at 0.49 of the way from the eyes to the mouth
    frontal = math.exp(-((yaw / 0.25) ** 2) - ((pitch - 0.49) / 0.15) ** 2)
    return sharpness * frontal


def patch_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two liveness patches (1: the same). The whole patch:
    its inner face alone told people apart worse (others' up to 0.79, the same head's
    from 0.75)."""
    x, y = a.ravel(), b.ravel()
    x = (x - x.mean()) / (x.std() + 1e-6)
    y = (y - y.mean()) / (y.std() + 1e-6)
    return float(np.mean(x * y))


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
