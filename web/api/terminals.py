"""Terminals and their no-typing pairing: the TV shows a code, an admin binds it, the TV
collects its long-lived token once. /api/terminals..."""

from __future__ import annotations

import time
from collections import deque

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.accounts import issue_terminal_token, pairing_secret_matches, start_pairing
from db.models import OrgKind, OrgUnit, Terminal, TerminalKind, utcnow
from db.participants import terminal_participant
from lighthouse.keys import DISCONNECT_KEY, TOKEN_SERVICE_KEY

from .common import (
    ApiError,
    authed,
    json_response,
    parse_body,
    public,
    query_int,
    scoped_object,
    scoped_org,
)


class PairingRateLimit:
    """At most `limit` pairing starts per address per minute: the endpoint is open."""

    def __init__(self, limit: int = 10, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str) -> bool:
        now = time.monotonic()
        seen = self._seen.setdefault(address, deque())
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        if len(self._seen) > 10_000:  # forget idle addresses
            self._seen = {a: q for a, q in self._seen.items() if q}
        return True


PAIRING_LIMIT_KEY = web.AppKey("pairing_limit", PairingRateLimit)


def terminal_json(terminal: Terminal) -> dict:
    return {
        "id": terminal.id,
        "org_id": terminal.org_id,
        "name": terminal.name,
        "kind": terminal.kind,
        "paired_at": terminal.paired_at,
        "revoked_at": terminal.revoked_at,
        "last_seen_at": terminal.last_seen_at,
        "online": terminal.online,
    }


@public
async def post_pairing(request: web.Request, session: AsyncSession) -> web.Response:
    if not request.app[PAIRING_LIMIT_KEY].allow(request.remote or "?"):
        raise ApiError(429, "too_many_requests", "too many pairing attempts; wait a minute")
    terminal, secret = await start_pairing(session)
    await session.commit()
    return json_response(
        {
            "code": terminal.pairing_code,
            "secret": secret,
            "expires_at": terminal.pairing_expires_at,
        },
        status=201,
    )


class ClaimBody(BaseModel):
    code: str = Field(min_length=4, max_length=12)
    secret: str = Field(min_length=8, max_length=128)


@public
async def post_claim(request: web.Request, session: AsyncSession) -> web.Response:
    body = await parse_body(request, ClaimBody)
    terminal = (
        await session.execute(select(Terminal).where(Terminal.pairing_code == body.code.upper()))
    ).scalar_one_or_none()
    if terminal is None or not pairing_secret_matches(terminal, body.secret):
        raise ApiError(404, "unknown_pairing", "no such pairing; start again")
    if terminal.org_id is None:
        if terminal.pairing_expires_at is not None and terminal.pairing_expires_at < utcnow():
            raise ApiError(410, "pairing_expired", "the pairing code has expired; start again")
        return json_response({"status": "waiting"}, status=202)
    if terminal.token_collected:
        raise ApiError(409, "already_collected", "this terminal's token was collected already")
    org = await session.get(OrgUnit, terminal.org_id)
    assert org is not None
    credential = await issue_terminal_token(session, request.app[TOKEN_SERVICE_KEY], terminal, org)
    terminal.token_collected = True
    terminal.pairing_code = None
    terminal.pairing_secret_hash = None
    await session.commit()
    return json_response(
        {
            "status": "paired",
            "token": credential.token,
            "terminal": terminal_json(terminal),
            "org": {"id": org.id, "name": org.name},
        }
    )


class BindBody(BaseModel):
    code: str = Field(min_length=4, max_length=12)
    org_id: int
    name: str = Field(min_length=1, max_length=100)
    kind: TerminalKind = TerminalKind.TV
    # bind although the site already has a paired terminal of that name
    allow_same_name: bool = False


@authed
async def post_bind(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, BindBody)
    org = await scoped_org(session, principal, body.org_id, Capability.TERMINALS_WRITE)
    if org.kind not in (OrgKind.COUNTY, OrgKind.TOWN, OrgKind.VILLAGE, OrgKind.BRANCH):
        raise ApiError(
            422,
            "validation_failed",
            "a terminal stands at a site",
            {"org_id": f"a {org.kind} is not a site"},
        )
    terminal = (
        await session.execute(
            select(Terminal).where(Terminal.pairing_code == body.code.strip().upper())
        )
    ).scalar_one_or_none()
    if terminal is None or terminal.org_id is not None:
        raise ApiError(
            404, "unknown_pairing", "no TV is showing that code", {"code": "not shown by any TV"}
        )
    if terminal.pairing_expires_at is not None and terminal.pairing_expires_at < utcnow():
        raise ApiError(
            410,
            "pairing_expired",
            "that code has expired; restart the TV's pairing",
            {"code": "expired"},
        )
    same_name = await session.scalar(
        select(Terminal.id).where(
            Terminal.org_id == org.id,
            Terminal.name == body.name,
            Terminal.revoked_at.is_(None),
            Terminal.paired_at.is_not(None),
        )
    )
    if same_name is not None and not body.allow_same_name:
        # two TVs of one name at one site show as two rows nobody can tell apart
        raise ApiError(
            409,
            "same_name_at_site",
            f"{org.name} already has a terminal named {body.name}",
            {"name": "already used at this site"},
        )
    terminal.org_id = org.id
    terminal.org_path = org.path
    terminal.name = body.name
    terminal.kind = body.kind
    terminal.paired_at = utcnow()
    audit.record(
        session,
        principal,
        "terminal_paired",
        target_type="terminal",
        target_id=terminal.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"name": body.name, "org": org.name},
    )
    await session.commit()
    return json_response(terminal_json(terminal), status=201)


@authed
async def list_terminals(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    org = await scoped_org(session, principal, query_int(request, "org"), Capability.TERMINALS_READ)
    rows = await session.execute(
        select(Terminal)
        .where(Terminal.org_path.like(f"{org.path}%"))
        .order_by(Terminal.org_path, Terminal.id)
        .limit(2000)
    )
    return json_response({"terminals": [terminal_json(t) for t in rows.scalars()]})


@authed
async def post_revoke(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    terminal = await scoped_object(
        session,
        principal,
        Terminal,
        int(request.match_info["terminal_id"]),
        Capability.TERMINALS_WRITE,
        "terminal",
    )
    await request.app[TOKEN_SERVICE_KEY].revoke_terminal(session, terminal.id)
    terminal.revoked_at = utcnow()
    terminal.online = False
    audit.record(
        session,
        principal,
        "terminal_revoked",
        target_type="terminal",
        target_id=terminal.id,
        org_path=terminal.org_path,
        remote_addr=request.remote,
    )
    await session.commit()
    # a revoked TV must not stay in the meeting it is in
    disconnect = request.app.get(DISCONNECT_KEY)
    if disconnect is not None:
        await disconnect(terminal_participant(terminal.id))
    return json_response(terminal_json(terminal))
