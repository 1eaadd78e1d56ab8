"""The ICE servers a joined client is given: TURN REST credentials minted per session.

coturn's `use-auth-secret` mode (the "TURN REST API" draft, draft-uberti-behave-turn-rest)
shares one secret between Lighthouse and the TURN server: the username is
`<expiry unix time>:<user>` and the password base64(HMAC-SHA1(secret, username)). coturn
recomputes the password and refuses the username once its expiry has passed, so a
credential copied out of a browser is worth a few hours, not until the next change of a
static password. Static `[[ice_servers]]` credentials stay as a fallback for TURN servers
without the shared-secret mode; either kind goes only to a client that joined with a
valid token (the `joined` reply), never into a page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sfu.negotiation import IceServer

# a meeting lasts up to about three hours; a credential must outlive the allocation it
# opens (coturn checks the expiry on every refresh), and a rejoin mints a new one
DEFAULT_TTL_S = 4 * 3600
_UNSAFE_USER = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class TurnRestCredentials:
    """Mints coturn `use-auth-secret` credentials for `urls`."""

    secret: str
    urls: tuple[str, ...]
    ttl_s: int = DEFAULT_TTL_S

    def mint(self, user: str, now: float | None = None) -> IceServer:
        expiry = int(now if now is not None else time.time()) + self.ttl_s
        # the separator is ':', so the user part must not hold one
        username = f"{expiry}:{_UNSAFE_USER.sub('-', user)[:64]}"
        digest = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
        return IceServer(
            urls=list(self.urls), username=username, credential=base64.b64encode(digest).decode()
        )


class IceServersForClients:
    """What a joined client puts in RTCConfiguration.iceServers."""

    def __init__(
        self,
        static: Sequence[IceServer] = (),
        turn_rest: TurnRestCredentials | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.static = tuple(static)
        self.turn_rest = turn_rest
        self.clock = clock

    def for_participant(self, participant_id: str) -> list[dict[str, Any]]:
        servers = [server.to_browser() for server in self.static]
        if self.turn_rest is not None:
            servers.append(self.turn_rest.mint(participant_id, self.clock()).to_browser())
        return servers
