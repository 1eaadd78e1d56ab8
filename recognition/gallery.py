"""Enrolled faces: checking an enrolment photo, and ranking a track against the members
a meeting expects (never the whole county).

A member has 1-5 enrolment photos, each one embedding of one model. A track's samples
are compared with every photo; a member's similarity per sample is its best photo's, and
its score is the median over the samples (one blurred frame neither makes nor breaks it).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .engine import FaceEngine, align, normalise

MIN_ENROL_FACE_PX = 64
# variance of the Laplacian of the aligned 112x112 crop: below it the photo is too blurred
MIN_ENROL_SHARPNESS = 40.0
# mean grey of the aligned face's middle: outside these the photo is too dark or burnt
# out (the faces in packages, enrolled, lie at 100-190; a face too dark to see is ~25)
ENROL_GREY_RANGE = (50.0, 225.0)


class EnrolmentError(Exception):
    """The photo cannot be enrolled; `code` is stable, the message says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class EnrolledFace:
    embedding: np.ndarray
    face_jpeg: bytes
    sharpness: float
    face_px: float


# a 40-megapixel phone photo is the most a member's photo needs to be
MAX_PHOTO_PIXELS = 40_000_000


def decode_image(data: bytes) -> np.ndarray:
    """A JPEG or PNG photo, its declared size checked before it is decoded: a 379 KiB PNG
    declaring 20000 x 20000 pixels took 6-8 s and 2.3 GB to decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:  # reads the header only
                width, height = probe.size
    except Image.DecompressionBombError:
        width = height = MAX_PHOTO_PIXELS  # Pillow's own limit: far above ours
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise EnrolmentError("not_an_image", "the file is not a JPEG or PNG photo") from exc
    if width * height > MAX_PHOTO_PIXELS:
        raise EnrolmentError(
            "image_too_large",
            f"the photo is {width} x {height} pixels; at most {MAX_PHOTO_PIXELS // 10**6} "
            "megapixels",
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise EnrolmentError("not_an_image", "the file is not a JPEG or PNG photo")
    return image


def enrolment_crop(engine: FaceEngine, bgr: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The aligned crop of the one face in an enrolment photo, its sharpness and its size
    in pixels, after checking the photo."""
    faces = [f for f in engine.detect(bgr) if f.score >= engine.enrol_min_score]
    if not faces:
        raise EnrolmentError("no_face", "no face found: use a photo of the member's face")
    if len(faces) > 1:
        raise EnrolmentError(
            "several_faces", f"{len(faces)} faces found: use a photo of the member alone"
        )
    face = faces[0]
    if face.size < MIN_ENROL_FACE_PX:
        raise EnrolmentError(
            "face_too_small",
            f"the face is {face.size:.0f} pixels wide; it must be at least "
            f"{MIN_ENROL_FACE_PX}: use a closer or larger photo",
        )
    crop = align(bgr, face)
    sharpness = float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())
    # light first: a dark face has little contrast, and would read as blurred
    grey = float(cv2.cvtColor(crop[24:104, 24:88], cv2.COLOR_BGR2GRAY).mean())
    if grey < ENROL_GREY_RANGE[0]:
        raise EnrolmentError("too_dark", "the face is too dark: take the photo in better light")
    if grey > ENROL_GREY_RANGE[1]:
        raise EnrolmentError(
            "overexposed", "the face is burnt out by light: take the photo out of direct light"
        )
    if sharpness < MIN_ENROL_SHARPNESS:
        raise EnrolmentError("too_blurred", "the face is blurred: use a sharper photo")
    return crop, sharpness, face.size


def enrolment_embedding(engine: FaceEngine, crop: np.ndarray, *, flip: bool = True) -> np.ndarray:
    """The embedding a member is matched against: the sum of the crop's and its mirror
    image's (the field's "flip test": a phone's front camera mirrors, and a face's two
    sides differ). bench/faceset.py measures it, and colour normalisation, which lost."""
    crops = [crop, crop[:, ::-1].copy()] if flip else [crop]
    return normalise(engine.embed(crops).sum(axis=0, keepdims=True))[0]


def enrol_photo(engine: FaceEngine, bgr: np.ndarray) -> EnrolledFace:
    """The embedding of the one face in an enrolment photo, after checking the photo."""
    crop, sharpness, face_px = enrolment_crop(engine, bgr)
    embedding = enrolment_embedding(engine, crop)
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return EnrolledFace(embedding, jpeg.tobytes() if ok else b"", sharpness, face_px)


class Gallery:
    def __init__(self, model_id: str, faces: dict[str, list[np.ndarray]]) -> None:
        self.model_id = model_id
        self.members = sorted(m for m, vectors in faces.items() if vectors)
        rows, owners = [], []
        for index, member in enumerate(self.members):
            for vector in faces[member]:
                rows.append(np.asarray(vector, np.float32))
                owners.append(index)
        self.matrix = np.stack(rows) if rows else np.zeros((0, 128), np.float32)
        self.owners = np.array(owners, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.members)

    def rank(self, samples: np.ndarray) -> list[tuple[str, float]]:
        """(member, median similarity) for every member, best first."""
        if not self.members:
            return []
        similarity = samples @ self.matrix.T  # samples x photos
        per_member = np.full((samples.shape[0], len(self.members)), -1.0, np.float32)
        for index in range(len(self.members)):
            per_member[:, index] = similarity[:, self.owners == index].max(axis=1)
        medians = np.median(per_member, axis=0)
        order = np.argsort(-medians)
        return [(self.members[i], float(medians[i])) for i in order]
