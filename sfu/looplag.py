"""How late an event loop runs: a probe that sleeps a few milliseconds and measures how
much later than asked it woke. The longest such stall is what a packet waiting in that
loop may have waited on top of its own handling (a media worker's forwarding loop must
not stall behind anything)."""

from __future__ import annotations

import asyncio

PROBE_S = 0.005
RECENT_S = 60


class LoopLag:
    def __init__(self, probe_s: float = PROBE_S) -> None:
        self.probe_s = probe_s
        self.max_s = 0.0
        self.samples = 0
        self.over_5ms = 0
        # the longest stall in each of the last seconds: (second, stall)
        self._recent: list[tuple[int, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.probe_s)
            late = loop.time() - before - self.probe_s
            self.samples += 1
            self.over_5ms += late > 0.005
            self.max_s = max(self.max_s, late)
            second = int(before)
            if self._recent and self._recent[-1][0] == second:
                if late > self._recent[-1][1]:
                    self._recent[-1] = (second, late)
            else:
                self._recent.append((second, late))
                del self._recent[:-RECENT_S]

    def recent_max_ms(self, seconds: int = 10) -> float:
        """The longest stall of the last `seconds` (whole seconds of the loop's clock)."""
        now = int(asyncio.get_running_loop().time())
        stalls = [late for second, late in self._recent if now - second < seconds]
        return round(max(stalls, default=0.0) * 1000, 2)

    def read(self, reset: bool = False) -> dict[str, float | int]:
        """The longest stall (ms) and how many probes came over 5 ms late, since the last
        reset."""
        figures: dict[str, float | int] = {
            "max_stall_ms": round(self.max_s * 1000, 2),
            "over_5ms": self.over_5ms,
            "samples": self.samples,
        }
        if reset:
            self.max_s, self.samples, self.over_5ms = 0.0, 0, 0
        return figures

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
