"""What every API handler shares: the caller, errors that name the field, JSON helpers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import AccessDenied, Capability, Principal
from db.accounts import AuthError
from db.models import OrgUnit
from lighthouse.keys import CONFIG_KEY, DATABASE_KEY, TOKEN_SERVICE_KEY

logger = logging.getLogger(__name__)

SESSION_COOKIE = "lh_session"
# called with a participant id ("terminal:12") whose access was revoked: ends its meeting

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


def not_found(what: str) -> ApiError:
    # the same answer for "does not exist" and "outside your subtree": no existence leaks
    return ApiError(404, "not_found", f"no such {what} in your part of the org tree")


def json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data,
        status=status,
        dumps=lambda v: json.dumps(v, ensure_ascii=False, default=json_default),
    )


def error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        body["fields"] = error.fields
    return json_response({"error": body}, status=error.status)


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as `model`; a 422 naming each bad field otherwise."""
    if request.content_type != "application/json":  # text/plain is what a foreign form posts
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from exc
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = {}
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"]) or "body"
            fields[name] = error["msg"]
        raise ApiError(
            422, "validation_failed", "invalid fields: " + ", ".join(sorted(fields)), fields
        ) from exc


def query_int(
    request: web.Request,
    name: str,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = 1_000_000_000,
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            422, "validation_failed", f"{name} must be an integer", {name: "must be an integer"}
        ) from None
    if not minimum <= value <= maximum:
        raise ApiError(
            422,
            "validation_failed",
            f"{name} is out of range",
            {name: f"must be between {minimum} and {maximum}"},
        )
    return value


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _own_origin(request: web.Request) -> bool:
    """Whether a request comes from this server's own pages: its Origin (else Referer)
    names this host (or the configured public URL's)."""
    sent = request.headers.get("Origin") or request.headers.get("Referer")
    if not sent or sent == "null":
        return False
    netloc = urlsplit(sent).netloc
    public_url = request.app[CONFIG_KEY].public_url if CONFIG_KEY in request.app else None
    own = {request.host} | ({urlsplit(public_url).netloc} if public_url else set())
    return netloc in own


async def authenticate(request: web.Request, session: AsyncSession) -> Principal:
    # A cookie goes with any request the browser makes, a form posted from another site's
    # page too: a state change on the cookie alone must come from our own pages. (A bearer
    # token is sent only by code that holds it.)
    by_cookie = SESSION_COOKIE in request.cookies and not request.headers.get(
        "Authorization", ""
    ).lower().startswith("bearer ")
    if by_cookie and request.method not in SAFE_METHODS and not _own_origin(request):
        raise ApiError(403, "cross_site", "this request did not come from this server's pages")
    try:
        return await request.app[TOKEN_SERVICE_KEY].verify(session, bearer_token(request))
    except AuthError as exc:
        raise ApiError(401, exc.code, exc.message) from exc


def check(principal: Principal, capability: Capability, org_path: str | None, what: str) -> None:
    """Raise 403 when the role lacks the capability, 404 when the object is out of scope."""
    if not principal.allows(capability):
        raise ApiError(403, "forbidden", f"your role ({principal.role}) may not {capability}")
    if not principal.covers(org_path):
        raise not_found(what)


async def scoped_org(
    session: AsyncSession, principal: Principal, org_id: int | None, capability: Capability
) -> OrgUnit:
    """The org unit asked for (default: the caller's own), checked against the caller."""
    org = await session.get(OrgUnit, org_id if org_id is not None else principal.org_id)
    if org is None:
        raise not_found("org unit")
    check(principal, capability, org.path, "org unit")
    return org


async def scoped_object(
    session: AsyncSession,
    principal: Principal,
    model: type[T],
    object_id: int,
    capability: Capability,
    what: str,
) -> T:
    """An object with an `org_path`, fetched by id and checked against the caller."""
    found = await session.get(model, object_id)
    if found is None:
        raise not_found(what)
    check(principal, capability, found.org_path, what)  # type: ignore[attr-defined]
    return found


Handler = Callable[[web.Request, AsyncSession, Principal], Awaitable[web.StreamResponse]]


def authed(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler: one DB session per request, the caller authenticated, errors as JSON.

    Refusals (403) are audited, since a caller probing outside its role is worth knowing.
    """

    async def wrapper(request: web.Request) -> web.StreamResponse:
        database = request.app[DATABASE_KEY]
        async with database.session() as session:
            principal: Principal | None = None
            try:
                principal = await authenticate(request, session)
                return await handler(request, session, principal)
            except ApiError as error:
                await session.rollback()
                if error.status == 403 and principal is not None:
                    audit.record(
                        session,
                        principal,
                        "access_denied",
                        target_type="endpoint",
                        target_id=request.path,
                        org_path=principal.org_path,
                        remote_addr=request.remote,
                        detail={"method": request.method, "reason": error.message},
                    )
                    await session.commit()
                return error_response(error)
            except AccessDenied as denied:
                await session.rollback()
                return error_response(ApiError(403, "forbidden", denied.reason))
            except Exception:
                # a bug or a database fault: logged with its traceback, answered as JSON
                logger.exception("API request failed: %s %s", request.method, request.path)
                await session.rollback()
                return error_response(
                    ApiError(500, "internal_error", "the server could not do this; it is logged")
                )

    return wrapper


def public(
    handler: Callable[[web.Request, AsyncSession], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Like `authed`, for the few endpoints open without a token (login, TV pairing)."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        async with request.app[DATABASE_KEY].session() as session:
            try:
                return await handler(request, session)
            except ApiError as error:
                await session.rollback()
                return error_response(error)

    return wrapper


def audit_object(
    request: web.Request,
    session: AsyncSession,
    principal: Principal,
    action: str,
    target_type: str,
    target: Any,
    detail: dict | None = None,
) -> None:
    """Audit `action` on an object that has an `id` and an `org_path` (a meeting, an
    emergency), from the request's address; it commits with the change."""
    audit.record(
        session,
        principal,
        action,
        target_type=target_type,
        target_id=target.id,
        org_path=target.org_path,
        remote_addr=request.remote,
        detail=detail,
    )


EVENTS_KEEPALIVE_S = 15.0


async def verify_streaming(request: web.Request, capability: Capability) -> Principal:
    """The caller, checked in a short session of its own: a stream must not hold a
    database connection for as long as it lasts."""
    async with request.app[DATABASE_KEY].session() as session:
        try:
            principal = await request.app[TOKEN_SERVICE_KEY].verify(session, bearer_token(request))
        except AuthError as error:
            raise ApiError(401, error.code, error.message) from None
    check(principal, capability, principal.org_path, "event stream")
    return principal


async def serve_events(
    request: web.Request,
    capability: Capability,
    queue: asyncio.Queue[dict],
    name_of: Callable[[dict], str],
    keepalive_s: float = EVENTS_KEEPALIVE_S,
) -> web.StreamResponse:
    """A `text/event-stream` of what arrives on `queue`: `event: ready` once subscribed
    (load the page's list then: nothing is replayed), then one event per item named by
    `name_of`; a `: keepalive` comment every `keepalive_s`, when the token is checked
    again (signed out or revoked: the stream ends). An item {"type": "closed"} ends it."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    try:
        await response.prepare(request)
        await response.write(b"event: ready\ndata: {}\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                try:
                    await verify_streaming(request, capability)
                except ApiError:
                    break
                await response.write(b": keepalive\n\n")
                continue
            if event.get("type") == "closed":
                break
            data = json.dumps(event, ensure_ascii=False, default=json_default)
            await response.write(f"event: {name_of(event)}\ndata: {data}\n\n".encode())
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
    except ConnectionError:  # the page went away
        pass
    return response
