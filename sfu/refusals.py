"""What the server refused a peer, in the log, with the peer's browser: a rate-limited
record for the county's IT office (a village TV that cannot publish is otherwise silent).

Bad SDP, a codec the browser lacks, a section it declined, ICE that failed: each is one
warning line naming the participant, its user agent and the reason, at most `per_minute`
lines per kind; a client that retries every second adds a count, not a flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class RefusalLog:
    def __init__(self, per_minute: int = 10, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        # kind -> (start of its minute, lines logged in it, lines left out)
        self._windows: dict[str, tuple[float, int, int]] = {}

    def refused(self, kind: str, participant: str, user_agent: str, reason: str) -> bool:
        """Log one refusal; False if this kind's lines for the minute are used up."""
        now = self.clock()
        start, logged, left_out = self._windows.get(kind, (now, 0, 0))
        if now - start >= 60.0:
            if left_out:
                logger.warning(
                    "%d more %s refusals in the last minute were not logged", left_out, kind
                )
            start, logged, left_out = now, 0, 0
        if logged >= self.per_minute:
            self._windows[kind] = (start, logged, left_out + 1)
            return False
        self._windows[kind] = (start, logged + 1, left_out)
        logger.warning(
            "refused %s for %s (%s): %s",
            kind,
            participant,
            user_agent[:200] or "no user agent",
            reason[:300],
        )
        return True
