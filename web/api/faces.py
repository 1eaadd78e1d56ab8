"""Face enrolment and the biometric evidence of sign-ins (docs/api.md, "Face sign-in").

Enrolment photos, their embeddings, sign-in face crops and scene pictures are biometric
data: only roles with `faces:read` see them, within their subtree, and every list of a
member's enrolment photos and every change is audited. Embeddings never leave the server.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

import aiohttp
from aiohttp import BodyPartReader, web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Capability, Principal
from db.models import FaceEnrolment, Member
from lighthouse.keys import EVIDENCE_DIR_KEY, RECOGNITION_KEY
from recognition.engine import FaceEngine
from recognition.gallery import EnrolledFace, EnrolmentError, decode_image, enrol_photo
from recognition.service import RecognitionService

from .common import ApiError, audit_object, authed, check, json_response, not_found, scoped_object

MAX_PHOTOS_PER_MEMBER = 5
MAX_PHOTO_BYTES = 5 * 1024 * 1024

ENROLMENT_MESSAGES = {
    "not_an_image": "不是可识别的图片，请上传 JPG 或 PNG 照片",
    "image_too_large": "照片像素过大（超过 4000 万像素），请上传普通照片",
    "no_face": "照片中没有找到人脸，请上传本人正面、清晰的照片",
    "several_faces": "照片中有多张人脸，请上传只有本人的照片",
    "face_too_small": "人脸太小，请上传人脸更大（离镜头更近）的照片",
    "too_blurred": "照片太模糊，请上传清晰的照片",
    "too_dark": "照片太暗，请在光线充足的地方重新拍摄",
    "overexposed": "照片过亮（人脸曝光过度），请避开强光重新拍摄",
}


def enrolment_dict(face: FaceEnrolment, current_model: str | None) -> dict:
    return {
        "id": face.id,
        "member_id": face.member_id,
        "model_id": face.model_id,
        # made by another engine: not compared any more, the member must be enrolled again
        "current": current_model is None or face.model_id == current_model,
        "sharpness": round(face.sharpness, 1),
        "face_px": face.face_px,
        "created_at": face.created_at,
        "photo_url": f"/api/faces/{face.id}/photo.jpg",
    }


async def _member(
    request: web.Request, session: AsyncSession, principal: Principal, capability: Capability
) -> Member:
    member_id = int(request.match_info["member_id"])
    return await scoped_object(session, principal, Member, member_id, capability, "member")


async def _face(
    request: web.Request, session: AsyncSession, principal: Principal, capability: Capability
) -> FaceEnrolment:
    face_id = int(request.match_info["face_id"])
    return await scoped_object(
        session, principal, FaceEnrolment, face_id, capability, "enrolment photo"
    )


def _service(request: web.Request) -> RecognitionService:
    service = request.app.get(RECOGNITION_KEY)
    if service is None or service.engine is None:
        raise ApiError(409, "recognition_off", "本服务器未启用人脸签到（[recognition] enabled）")
    return service


async def _read_photos(request: web.Request) -> list[tuple[str, bytes]]:
    """The `photo` parts of a multipart upload, each refused as soon as it is too big."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(
            415, "unsupported_media_type", "请以 multipart/form-data 上传，照片放在 photo 字段"
        )
    too_big = ApiError(
        413,
        "file_too_large",
        f"每张照片不能超过 {MAX_PHOTO_BYTES // (1024 * 1024)} MB",
    )
    if (request.content_length or 0) > MAX_PHOTOS_PER_MEMBER * MAX_PHOTO_BYTES + 64 * 1024:
        raise too_big
    photos: list[tuple[str, bytes]] = []
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "photo":
                await part.release()
                continue
            if len(photos) == MAX_PHOTOS_PER_MEMBER:
                raise ApiError(
                    422,
                    "too_many_photos",
                    f"每位党员最多 {MAX_PHOTOS_PER_MEMBER} 张照片",
                    {"photo": f"at most {MAX_PHOTOS_PER_MEMBER}"},
                )
            data = bytearray()
            while chunk := await part.read_chunk(256 * 1024):
                data += chunk
                if len(data) > MAX_PHOTO_BYTES:
                    raise too_big
            photos.append((unquote(part.filename or f"photo{len(photos) + 1}"), bytes(data)))
    except (ValueError, AssertionError, aiohttp.ClientPayloadError) as exc:
        raise ApiError(400, "bad_upload", "上传内容不完整或格式有误") from exc
    if not photos:
        raise ApiError(422, "validation_failed", "没有收到照片（字段名 photo）", {"photo": "必填"})
    return photos


def _enrol(engine: FaceEngine, data: bytes) -> EnrolledFace:
    """In the worker pool: one enrolment photo decoded and checked."""
    return enrol_photo(engine, decode_image(data))


@authed
async def post_faces(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    """Enrol 1-5 photos of a member; each is checked, the good ones are kept."""
    member = await _member(request, session, principal, Capability.FACES_WRITE)
    service = _service(request)
    engine = service.engine
    assert engine is not None and service.executor is not None
    photos = await _read_photos(request)
    kept = await session.scalar(
        select(func.count())
        .select_from(FaceEnrolment)
        .where(FaceEnrolment.member_id == member.id, FaceEnrolment.model_id == engine.model_id)
    )
    if (kept or 0) + len(photos) > MAX_PHOTOS_PER_MEMBER:
        raise ApiError(
            422,
            "too_many_photos",
            f"该党员已有 {kept} 张照片，最多 {MAX_PHOTOS_PER_MEMBER} 张：请先删除旧照片",
            {"photo": f"at most {MAX_PHOTOS_PER_MEMBER - (kept or 0)} more"},
        )
    loop = asyncio.get_running_loop()
    enrolled, rejected = [], []
    for file_name, data in photos:
        try:
            face = await loop.run_in_executor(service.executor, _enrol, engine, data)
        except EnrolmentError as error:
            rejected.append(
                {
                    "file": file_name,
                    "code": error.code,
                    "message": ENROLMENT_MESSAGES.get(error.code, error.message),
                }
            )
            continue
        row = FaceEnrolment(
            member_id=member.id,
            org_path=member.org_path,
            model_id=engine.model_id,
            embedding=face.embedding.astype("float32").tobytes(),
            face_jpeg=face.face_jpeg,
            sharpness=face.sharpness,
            face_px=round(face.face_px),
            created_by=principal.subject,
        )
        session.add(row)
        enrolled.append(row)
    if not enrolled:
        raise ApiError(
            422,
            "photo_rejected",
            "；".join(f"{r['file']}：{r['message']}" for r in rejected),
            {r["file"]: r["code"] for r in rejected},
        )
    await session.flush()
    audit_object(
        request,
        session,
        principal,
        "faces.enrolled",
        "member",
        member,
        {"photos": len(enrolled), "rejected": [r["code"] for r in rejected]},
    )
    await session.commit()
    await service.enrolments_changed(member.org_path)
    return json_response(
        {
            "enrolled": [enrolment_dict(f, engine.model_id) for f in enrolled],
            "rejected": rejected,
        },
        status=201,
    )


@authed
async def list_faces(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    member = await _member(request, session, principal, Capability.FACES_READ)
    service = request.app.get(RECOGNITION_KEY)
    current = service.engine.model_id if service is not None and service.engine else None
    faces = (
        await session.scalars(
            select(FaceEnrolment)
            .where(FaceEnrolment.member_id == member.id)
            .order_by(FaceEnrolment.id)
        )
    ).all()
    audit_object(request, session, principal, "faces.viewed", "member", member)
    await session.commit()
    return json_response(
        {
            "member_id": member.id,
            "max_photos": MAX_PHOTOS_PER_MEMBER,
            "faces": [enrolment_dict(f, current) for f in faces],
        }
    )


@authed
async def get_face_photo(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    face = await _face(request, session, principal, Capability.FACES_READ)
    return jpeg_response(face.face_jpeg)


@authed
async def delete_face(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    face = await _face(request, session, principal, Capability.FACES_WRITE)
    org_path = face.org_path
    audit_object(
        request, session, principal, "faces.deleted", "face", face, {"member_id": face.member_id}
    )
    await session.delete(face)
    await session.commit()
    service = request.app.get(RECOGNITION_KEY)
    if service is not None:
        await service.enrolments_changed(org_path)
    return json_response({"deleted": True})


def jpeg_response(data: bytes) -> web.Response:
    # biometric pictures: never kept by a shared cache or the browser's disk cache
    return web.Response(
        body=data, content_type="image/jpeg", headers={"Cache-Control": "private, no-store"}
    )


async def evidence_response(request: web.Request, principal: Principal, obj, attribute: str):
    """A sign-in's or snapshot's evidence file, for `faces:read` callers covering it."""
    check(principal, Capability.FACES_READ, obj.org_path, "photo")
    relative = getattr(obj, attribute, None)
    if not relative:
        raise not_found("photo")
    root = request.app[EVIDENCE_DIR_KEY]
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise not_found("photo")
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        raise ApiError(410, "gone", "照片文件已不在服务器上") from None
    return jpeg_response(data)
