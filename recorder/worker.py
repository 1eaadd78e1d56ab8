"""The recorder's file work (open, mux, close, fsync) on one thread of its own, in order.

Muxing one frame is a few microseconds of C, but each fragment's write, and each
segment's close and fsync, wait on the disk, and a busy disk can make them wait for
hundreds of milliseconds. On the event loop that would stall every meeting's forwarding,
so the loop only queues jobs; the files are written through Python file objects, whose
calls release the GIL while the disk works. `threaded=False` runs the jobs inline instead
(what tests/test_recorder.py compares against).

Jobs are handed over in batches, every `batch_s`: waking the thread for each frame (one
job per frame, ~75 a second per venue) would cost more CPU than the muxing itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Done = Callable[[Any, BaseException | None], None]
Job = tuple[Callable[..., Any], tuple, int, Done | None]


class FileWorker:
    def __init__(
        self,
        *,
        threaded: bool = True,
        batch_s: float = 0.25,
        batch_bytes: int = 1024 * 1024,
        name: str = "recorder-files",
    ) -> None:
        self.threaded = threaded
        self.batch_s = batch_s
        self.batch_bytes = batch_bytes
        self.name = name
        self._queue: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: list[Job] = []
        self._batch_size = 0
        self._handover: asyncio.TimerHandle | None = None
        # two one-writer counters (no lock): the loop adds, the thread subtracts
        self.queued_bytes = 0
        self.done_bytes = 0
        self.jobs_failed = 0
        self._cpu_before = 0.0  # CPU time of threads that have ended

    @property
    def cpu_s(self) -> float:
        """CPU time the file thread has used (0 when inline: it is the loop's)."""
        thread = self._thread
        if thread is None or thread.ident is None:
            return self._cpu_before
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            return self._cpu_before + time.clock_gettime(clock)
        except OSError:  # the thread has just ended
            return self._cpu_before

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued for the disk and not yet handed to ffmpeg."""
        return self.queued_bytes - self.done_bytes

    def submit(
        self, job: Callable[..., Any], *args: Any, size: int = 0, then: Done | None = None
    ) -> None:
        """Run `job(*args)` after everything submitted before; `then(result, error)` is
        called on the event loop once it has run."""
        self.queued_bytes += size
        if not self.threaded:
            result, error = self._run_one(job, args)
            self.done_bytes += size
            if then is not None:
                then(result, error)
            return
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._batch.append((job, args, size, then))
        self._batch_size += size
        if self._batch_size >= self.batch_bytes:
            self._hand_over()
        elif self._handover is None:
            assert self._loop is not None
            self._handover = self._loop.call_later(self.batch_s, self._hand_over)

    def _hand_over(self) -> None:
        if self._handover is not None:
            self._handover.cancel()
            self._handover = None
        if self._batch:
            batch, self._batch, self._batch_size = self._batch, [], 0
            self._queue.put(batch)

    async def drain(self) -> None:
        """Wait until every job submitted so far has run."""
        if self._thread is None:
            return
        done = asyncio.get_running_loop().create_future()

        def finished(_result: Any, _error: BaseException | None) -> None:
            if not done.done():
                done.set_result(None)

        self.submit(lambda: None, then=finished)
        self._hand_over()
        await done

    async def close(self) -> None:
        if self._thread is None:
            return
        await self.drain()
        cpu = self.cpu_s
        self._queue.put(None)
        thread, self._thread = self._thread, None
        self._cpu_before = cpu
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    def _run_one(self, job: Callable[..., Any], args: tuple) -> tuple[Any, BaseException | None]:
        try:
            return job(*args), None
        except Exception as exc:  # one failed file must not stop the others' work
            self.jobs_failed += 1
            logger.exception("recorder file job failed")
            return None, exc

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            for job, args, size, then in batch:
                result, error = self._run_one(job, args)
                self.done_bytes += size
                if then is not None:
                    assert self._loop is not None
                    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                        self._loop.call_soon_threadsafe(then, result, error)
