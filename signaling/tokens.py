"""Signed participant tokens (JWT, HS256): who may join which room in which role."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from sfu.vocabulary import Role

# "supervisor": watches unannounced (hidden from everyone in the room; see sfu/room.py)
ROLES = tuple(Role)
# why a supervisor's token was minted: one drop-in, or one tile of a patrol wall
PURPOSES = ("drop_in", "patrol")
_ALGORITHM = "HS256"
_MIN_SECRET_BYTES = 32


class SigningKeys:
    """The server's HS256 keys: tokens are signed with the current one and verified with it
    or, during a rotation, with an older one until the operator removes it
    ([server] previous_secrets). A token verified by an older key says so (`stale`), so
    that a long-lived holder (a TV) can be handed a token signed with the current key."""

    def __init__(self, current: str, previous: Sequence[str] = ()) -> None:
        for key in (current, *previous):
            if len(key.encode()) < _MIN_SECRET_BYTES:
                raise ValueError(f"a token secret must be at least {_MIN_SECRET_BYTES} bytes")
        self.current = current
        self.previous = tuple(k for k in previous if k != current)

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.current, algorithm=_ALGORITHM)

    def verify(self, token: str, required: Sequence[str]) -> tuple[dict[str, Any], bool]:
        """The claims, and whether an older key signed them; raises jwt's errors."""
        options: Any = {"require": list(required)}
        for stale, key in enumerate((self.current, *self.previous)):
            try:
                claims = jwt.decode(token, key, algorithms=[_ALGORITHM], options=options)
            except jwt.InvalidSignatureError:
                if stale == len(self.previous):
                    raise
                continue
            return claims, stale > 0
        raise AssertionError("unreachable")


class TokenError(Exception):
    """A token that admits nobody. `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Grant:
    participant_id: str
    name: str
    room_id: str
    role: str
    expires_at: int
    # the API token (jti) this meeting token was minted from, checked for revocation at join
    source_token_id: str | None = None
    purpose: str | None = None  # a supervisor's: drop_in | patrol

    @property
    def hidden(self) -> bool:
        return self.role == Role.SUPERVISOR


class TokenIssuer:
    """Mints and verifies meeting tokens with the server's keys."""

    def __init__(self, secret: str | SigningKeys) -> None:
        self._keys = secret if isinstance(secret, SigningKeys) else SigningKeys(secret)

    def mint(
        self,
        participant_id: str,
        name: str,
        room_id: str,
        role: str,
        ttl_s: int = 12 * 3600,
        source_token_id: str | None = None,
        purpose: str | None = None,
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if purpose is not None and purpose not in PURPOSES:
            raise ValueError(f"unknown purpose {purpose!r}")
        claims = {
            "typ": "meeting",
            "sub": participant_id,
            "name": name,
            "room": room_id,
            "role": role,
            "exp": int(time.time()) + ttl_s,
        }
        if source_token_id:
            claims["src"] = source_token_id
        if purpose:
            claims["purpose"] = purpose
        return self._keys.sign(claims)

    def verify(self, token: object) -> Grant:
        if not isinstance(token, str) or not token:
            raise TokenError("invalid_token", "a token string is required")
        try:
            claims, _ = self._keys.verify(token, ["exp", "sub", "room", "role"])
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token_expired", "the token has expired; ask for a new link") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError("invalid_token", f"the token is not valid: {exc}") from exc
        if claims.get("typ") != "meeting":
            raise TokenError("invalid_token", "this is not a meeting token")
        role = claims.get("role")
        if role not in ROLES:
            raise TokenError("invalid_token", f"the token's role {role!r} is not known")
        for claim in ("sub", "room"):
            if not isinstance(claims.get(claim), str) or not claims[claim]:
                raise TokenError("invalid_token", f"the token's {claim} claim must be a string")
        name = claims.get("name")
        return Grant(
            participant_id=claims["sub"],
            name=name if isinstance(name, str) and name else claims["sub"],
            room_id=claims["room"],
            role=role,
            expires_at=int(claims["exp"]),
            source_token_id=claims.get("src") if isinstance(claims.get("src"), str) else None,
            purpose=claims.get("purpose") if claims.get("purpose") in PURPOSES else None,
        )
