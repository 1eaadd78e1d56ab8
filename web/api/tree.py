"""The org tree, staff accounts and sign-in: /api/login, /api/me, /api/org, /api/accounts."""

from __future__ import annotations

import time
from collections import deque

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import ROLE_CAPABILITIES, Capability, Principal
from db.accounts import SESSION_TTL, AuthError, login
from db.models import OrgKind, OrgUnit, Role, StaffAccount
from db.tree import TreeError, add_org, children, subtree_counts
from lighthouse.keys import CONFIG_KEY, PASSWORDS_KEY, TOKEN_SERVICE_KEY

from .common import (
    SESSION_COOKIE,
    ApiError,
    authed,
    json_response,
    parse_body,
    public,
    scoped_org,
)


def org_json(org: OrgUnit) -> dict:
    return {
        "id": org.id,
        "code": org.code,
        "name": org.name,
        "kind": org.kind,
        "parent_id": org.parent_id,
        "path": org.path,
        "depth": org.depth,
    }


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginThrottle:
    """Wrong passwords slow a guesser down: after `account_limit` failures within
    `window_s` an account is locked for the rest of the window, and an address after
    `address_limit` (it may be guessing many accounts). A success clears the account's."""

    def __init__(
        self, account_limit: int = 5, address_limit: int = 20, window_s: float = 900.0
    ) -> None:
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        return seen

    def locked(self, username: str, address: str) -> bool:
        now = time.monotonic()
        return (
            len(self._recent("account:" + username, now)) >= self.account_limit
            or len(self._recent("address:" + address, now)) >= self.address_limit
        )

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        for key in ("account:" + username, "address:" + address):
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # forget the quiet ones
            self._failures = {k: q for k, q in self._failures.items() if q}

    def succeeded(self, username: str) -> None:
        self._failures.pop("account:" + username, None)


LOGIN_THROTTLE_KEY = web.AppKey("login_throttle", LoginThrottle)


async def _audit_attempt(
    request: web.Request, session: AsyncSession, action: str, username: str
) -> None:
    """A refused sign-in, filed under the account's unit when it exists, so its admins
    see the attempts."""
    unit_path = (
        await session.execute(
            select(OrgUnit.path)
            .join(StaffAccount, StaffAccount.org_id == OrgUnit.id)
            .where(StaffAccount.username == username)
        )
    ).scalar_one_or_none()
    audit.record(
        session,
        None,
        action,
        target_type="account",
        target_id=username,
        org_path=unit_path,
        remote_addr=request.remote,
    )
    await session.commit()


@public
async def post_login(request: web.Request, session: AsyncSession) -> web.Response:
    body = await parse_body(request, LoginBody)
    throttle = request.app[LOGIN_THROTTLE_KEY]
    address = request.remote or "?"
    if throttle.locked(body.username, address):
        await _audit_attempt(request, session, "login_locked", body.username)
        raise ApiError(
            429,
            "too_many_attempts",
            "too many wrong passwords: sign-in is locked for 15 minutes",
        )
    try:
        account, credential = await login(
            session,
            request.app[TOKEN_SERVICE_KEY],
            request.app[PASSWORDS_KEY],
            body.username,
            body.password,
        )
    except AuthError as exc:
        throttle.failed(body.username, address)
        await _audit_attempt(request, session, "login_failed", body.username)
        raise ApiError(401, exc.code, exc.message) from exc
    throttle.succeeded(body.username)
    org = await session.get(OrgUnit, account.org_id)
    assert org is not None
    audit.record(
        session,
        None,
        "login",
        target_type="account",
        target_id=account.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"username": account.username},
    )
    await session.commit()
    response = json_response(
        {
            "token": credential.token,
            "expires_at": credential.expires_at,
            "role": account.role,
            "name": account.display_name,
            "org": org_json(org),
        }
    )
    public_url = request.app[CONFIG_KEY].public_url or ""
    response.set_cookie(
        SESSION_COOKIE,
        credential.token,
        httponly=True,
        # never over plain HTTP once the server is reached by HTTPS (itself or its proxy)
        secure=request.secure or public_url.startswith("https://"),
        samesite="Strict",
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
    )
    return response


@authed
async def post_logout(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    await request.app[TOKEN_SERVICE_KEY].revoke(session, principal.token_id)
    audit.record(
        session, principal, "logout", org_path=principal.org_path, remote_addr=request.remote
    )
    await session.commit()
    response = json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@authed
async def get_me(request: web.Request, session: AsyncSession, principal: Principal) -> web.Response:
    org = await session.get(OrgUnit, principal.org_id)
    return json_response(
        {
            "subject": principal.subject,
            "name": principal.name,
            "role": principal.role,
            "org": org_json(org) if org else None,
            # what the console may offer this caller (the API checks each call anyway)
            "capabilities": sorted(c.value for c in Capability if principal.allows(c)),
        }
    )


@authed
async def get_org(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    raw = request.match_info.get("org_id")
    org = await scoped_org(session, principal, int(raw) if raw else None, Capability.TREE_READ)
    kids = await children(session, org)
    ancestors: list[dict] = []
    parent_id = org.parent_id
    while parent_id is not None and org.id != principal.org_id:
        parent = await session.get(OrgUnit, parent_id)
        if parent is None or not principal.covers(parent.path):
            break
        ancestors.insert(0, org_json(parent))
        parent_id = parent.parent_id
    total, per_child = await subtree_counts(session, org)
    empty = {"members": 0, "terminals": 0}
    return json_response(
        {
            **org_json(org),
            "ancestors": ancestors,
            "counts": total,
            "children": [{**org_json(k), "counts": per_child.get(k.id, empty)} for k in kids],
        }
    )


class OrgBody(BaseModel):
    parent_id: int
    code: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z-]+$")
    name: str = Field(min_length=1, max_length=100)
    kind: OrgKind


@authed
async def post_org(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, OrgBody)
    parent = await scoped_org(session, principal, body.parent_id, Capability.TREE_WRITE)
    try:
        org = await add_org(session, parent=parent, code=body.code, name=body.name, kind=body.kind)
        await session.flush()
    except TreeError as exc:
        raise ApiError(422, "validation_failed", exc.message, {exc.field: exc.message}) from exc
    except IntegrityError as exc:
        raise ApiError(
            409, "conflict", f"the code {body.code} is taken", {"code": "already used"}
        ) from exc
    audit.record(
        session,
        principal,
        "org_created",
        target_type="org",
        target_id=org.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"name": org.name},
    )
    await session.commit()
    return json_response(org_json(org), status=201)


class OrgPatch(BaseModel):
    name: str = Field(min_length=1, max_length=100)


@authed
async def patch_org(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, OrgPatch)
    org = await scoped_org(
        session, principal, int(request.match_info["org_id"]), Capability.TREE_WRITE
    )
    old = org.name
    org.name = body.name
    audit.record(
        session,
        principal,
        "org_renamed",
        target_type="org",
        target_id=org.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"from": old, "to": body.name},
    )
    await session.commit()
    return json_response(org_json(org))


def may_grant(granter: Role, role: Role) -> bool:
    """Nobody grants more than they hold: a role may be given only by a role that has every
    one of its capabilities (a town office, which may not supervise or read the audit log,
    cannot make a supervisor who may). Terminals are paired, never created as accounts."""
    if role == Role.TERMINAL:
        return False
    return ROLE_CAPABILITIES[role] <= ROLE_CAPABILITIES[granter]


class AccountBody(BaseModel):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    display_name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=10, max_length=256)
    role: Role
    org_id: int


@authed
async def post_account(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, AccountBody)
    org = await scoped_org(session, principal, body.org_id, Capability.ACCOUNTS_WRITE)
    if not may_grant(principal.role, body.role):
        raise ApiError(403, "forbidden", f"you may not create {body.role} accounts")
    taken = (
        await session.execute(select(StaffAccount.id).where(StaffAccount.username == body.username))
    ).first()
    if taken:
        raise ApiError(409, "conflict", "that username is taken", {"username": "already used"})
    account = StaffAccount(
        username=body.username,
        display_name=body.display_name,
        password_hash=await request.app[PASSWORDS_KEY].hash(body.password),
        role=body.role,
        org_id=org.id,
    )
    session.add(account)
    await session.flush()
    audit.record(
        session,
        principal,
        "account_created",
        target_type="account",
        target_id=account.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"username": account.username, "role": account.role.value},
    )
    await session.commit()
    return json_response(
        {"id": account.id, "username": account.username, "role": account.role, "org_id": org.id},
        status=201,
    )
