"""Staff passwords, signed tokens with role and org scope, revocation, terminal pairing."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from signaling.tokens import SigningKeys

from .access import Principal
from .models import IssuedToken, OrgUnit, Role, RoomEvent, StaffAccount, Terminal, utcnow
from .participants import ParticipantId, account_participant, terminal_participant

SESSION_TTL = dt.timedelta(hours=12)
TERMINAL_TTL = dt.timedelta(days=3650)  # a TV holds its token until it is revoked
PAIRING_TTL = dt.timedelta(minutes=15)
# no 0/O/1/I: read off a TV across a room
_PAIRING_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


class AuthError(Exception):
    """A credential that admits nobody; `code` is stable for clients and tests."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_hasher = PasswordHasher()  # stateless and thread-safe: argon2id with library defaults


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class PasswordHashing:
    """argon2 off the event loop, on a bounded pool of threads (argon2 releases the GIL).

    One verify costs ~50 ms of CPU; on the loop, 16 logins at once held every meeting's
    forwarding (one process) and /healthz for 160-370 ms. The pool is small and bounded,
    a thread per four cores (one on a small machine): more would take the cores the loop
    and the media workers run on, and `asyncio.to_thread`'s default pool of dozens made
    each login wait behind all the others (36 ms median there against 2.7 ms with one
    thread). One thread checks ~20 passwords a second: a county's staff sign in rarely."""

    def __init__(self, workers: int | None = None) -> None:
        workers = workers or max(1, (os.cpu_count() or 1) // 4)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")

    async def check(self, password_hash: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, check_password, password_hash, password)

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, hash_password, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class IssuedCredential:
    token: str
    jti: str
    expires_at: dt.datetime


class TokenService:
    """Signs account and terminal tokens and checks them against the issued-token table."""

    def __init__(self, secret: str | SigningKeys) -> None:
        self._keys = secret if isinstance(secret, SigningKeys) else SigningKeys(secret)

    async def issue(
        self,
        session: AsyncSession,
        *,
        kind: str,
        subject: str,
        name: str,
        role: Role,
        org: OrgUnit,
        ttl: dt.timedelta,
        account_id: int | None = None,
        terminal_id: int | None = None,
    ) -> IssuedCredential:
        jti = secrets.token_urlsafe(16)
        now = utcnow()
        expires = now + ttl
        session.add(
            IssuedToken(
                jti=jti,
                kind=kind,
                account_id=account_id,
                terminal_id=terminal_id,
                role=role,
                org_id=org.id,
                issued_at=now,
                expires_at=expires,
            )
        )
        claims = {
            "typ": kind,
            "sub": subject,
            "name": name,
            "role": role.value,
            "org": org.id,
            "org_path": org.path,
            "jti": jti,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        return IssuedCredential(self._keys.sign(claims), jti, expires)

    async def verify(self, session: AsyncSession, token: str | None) -> Principal:
        if not token:
            raise AuthError("missing_token", "sign in first (no token was sent)")
        try:
            claims, stale = self._keys.verify(token, ["exp", "jti", "sub", "role", "org"])
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token_expired", "the sign-in has expired; sign in again") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from exc
        if claims.get("typ") not in ("session", "terminal"):
            raise AuthError("invalid_token", "this token is not for the API")
        issued = await session.get(IssuedToken, claims["jti"])
        if issued is None:
            raise AuthError("invalid_token", "the token was not issued by this server")
        if issued.revoked_at is not None:
            raise AuthError("token_revoked", "the token has been revoked")
        try:
            role = Role(claims["role"])
        except ValueError as exc:
            raise AuthError("invalid_token", "the token's role is unknown") from exc
        if role != issued.role or claims["org"] != issued.org_id:
            raise AuthError("invalid_token", "the token does not match its record")
        return Principal(
            subject=claims["sub"],
            name=claims.get("name", claims["sub"]),
            role=role,
            org_id=claims["org"],
            org_path=claims["org_path"],
            token_id=claims["jti"],
            signed_with_old_key=stale,
        )

    async def is_revoked(self, session: AsyncSession, jti: str) -> bool:
        """True unless the token was issued here and is neither revoked nor expired."""
        issued = await session.get(IssuedToken, jti)
        if issued is None or issued.revoked_at is not None:
            return True
        return issued.expires_at < utcnow()

    async def revoke_terminal(self, session: AsyncSession, terminal_id: int) -> int:
        """Every token a terminal holds (a re-keyed TV holds an old one and a new one)."""
        issued = (
            await session.execute(
                select(IssuedToken).where(
                    IssuedToken.terminal_id == terminal_id, IssuedToken.revoked_at.is_(None)
                )
            )
        ).scalars()
        count = 0
        for token in issued:
            token.revoked_at = utcnow()
            count += 1
        return count

    async def revoke(self, session: AsyncSession, jti: str) -> bool:
        issued = await session.get(IssuedToken, jti)
        if issued is None or issued.revoked_at is not None:
            return False
        issued.revoked_at = utcnow()
        return True


async def issue_terminal_token(
    session: AsyncSession, tokens: TokenService, terminal: Terminal, org: OrgUnit
) -> IssuedCredential:
    """A paired TV's token, held until the terminal is revoked; the terminal records it."""
    credential = await tokens.issue(
        session,
        kind="terminal",
        subject=terminal_participant(terminal.id),
        name=terminal.name,
        role=Role.TERMINAL,
        org=org,
        ttl=TERMINAL_TTL,
        terminal_id=terminal.id,
    )
    terminal.token_jti = credential.jti
    return credential


async def login(
    session: AsyncSession,
    tokens: TokenService,
    passwords: PasswordHashing,
    username: str,
    password: str,
) -> tuple[StaffAccount, IssuedCredential]:
    account = (
        await session.execute(select(StaffAccount).where(StaffAccount.username == username))
    ).scalar_one_or_none()
    # hash even for an unknown user, so timing does not tell which usernames exist
    password_hash = account.password_hash if account else _DUMMY_HASH
    if not await passwords.check(password_hash, password) or account is None or not account.active:
        raise AuthError("bad_credentials", "wrong username or password")
    org = await session.get(OrgUnit, account.org_id)
    assert org is not None
    credential = await tokens.issue(
        session,
        kind="session",
        subject=account_participant(account.id),
        name=account.display_name,
        role=account.role,
        org=org,
        ttl=SESSION_TTL,
        account_id=account.id,
    )
    return account, credential


_DUMMY_HASH = hash_password(secrets.token_urlsafe(12))


# -- terminal pairing ---------------------------------------------------------------------


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def start_pairing(session: AsyncSession) -> tuple[Terminal, str]:
    """A new unpaired terminal with a short code to show and a secret only the TV keeps."""
    # a TV left on the pairing screen asks again every 15 min: forget codes that expired
    await session.execute(
        delete(Terminal).where(
            Terminal.org_id.is_(None), Terminal.pairing_expires_at < utcnow() - PAIRING_TTL
        )
    )
    for _ in range(10):
        code = "".join(secrets.choice(_PAIRING_ALPHABET) for _ in range(6))
        taken = (
            await session.execute(select(Terminal.id).where(Terminal.pairing_code == code))
        ).first()
        if not taken:
            break
    else:  # pragma: no cover - 32^6 codes
        raise RuntimeError("no free pairing code")
    secret = secrets.token_urlsafe(24)
    terminal = Terminal(
        pairing_code=code,
        pairing_secret_hash=_secret_digest(secret),
        pairing_expires_at=utcnow() + PAIRING_TTL,
    )
    session.add(terminal)
    await session.flush()
    return terminal, secret


def pairing_secret_matches(terminal: Terminal, secret: str) -> bool:
    return terminal.pairing_secret_hash is not None and hmac.compare_digest(
        terminal.pairing_secret_hash, _secret_digest(secret)
    )


async def record_presence(
    session: AsyncSession,
    room_id: str,
    participant_id: str,
    name: str,
    online: bool,
    *,
    terminal_online: bool | None = None,
) -> None:
    """A participant joined or left a room: a timeline event, and a terminal's online state
    (`terminal_online` when it differs from being in the room: a TV in the lobby)."""
    event = RoomEvent(
        room_id=room_id,
        kind="joined" if online else "left",
        participant_id=participant_id,
        name=name,
    )
    session.add(event)
    who = ParticipantId.parse(participant_id)
    if who.account_id is not None:
        account = await session.get(StaffAccount, who.account_id)
        org = await session.get(OrgUnit, account.org_id) if account else None
        event.org_path = org.path if org else None
    if who.terminal_id is None:
        return
    terminal = await session.get(Terminal, who.terminal_id)
    if terminal is not None:
        event.org_path = terminal.org_path
        terminal.online = online if terminal_online is None else terminal_online
        terminal.last_seen_at = utcnow()
