"""Notifications out of the server: webhooks (a JSON POST an operator points at an SMS
gateway or a WeCom/DingTalk robot) and the live pages' event stream.

Webhooks are an outbox: `enqueue` writes one `NotificationDelivery` per webhook in the
caller's transaction (with the alert it tells of), and the sender posts pending ones
after the commit. Each POST is signed:

    X-Lighthouse-Timestamp: <unix seconds>
    X-Lighthouse-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>
    X-Lighthouse-Delivery: <delivery id>   (the same on every retry: the receiver dedups)

A 2xx answer delivers it; anything else (an error status, a refused connection, a
timeout) is retried with back-off (`first_retry_s`, doubling, at most `max_retry_s`)
until `max_attempts`, then it is marked failed. Every try is counted on the row and the
last error kept; the URL and the secret never reach a log or the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import DeliveryStatus, NotificationDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Webhook:
    name: str  # what the deliveries and the logs name it by
    url: str
    secret: str
    # the events it takes ("duty.late", "duty.absent", "duty.report"); empty: all
    events: tuple[str, ...] = ()

    def takes(self, event: str) -> bool:
        return not self.events or event in self.events


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass
class RetryPolicy:
    first_retry_s: float = 10.0
    max_retry_s: float = 3600.0
    max_attempts: int = 8
    timeout_s: float = 10.0

    def delay(self, attempts: int) -> float:
        return min(self.max_retry_s, self.first_retry_s * 2 ** max(0, attempts - 1))


@dataclass
class WebhookSender:
    database: Database
    webhooks: tuple[Webhook, ...]
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _http: aiohttp.ClientSession | None = None

    async def enqueue(
        self, session: AsyncSession, event: str, org_path: str | None, payload: dict
    ) -> list[NotificationDelivery]:
        """One delivery per webhook that takes the event, in the caller's transaction."""
        rows = [
            NotificationDelivery(
                event=event,
                org_path=org_path,
                target=hook.name,
                payload=payload,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=self.now(),
            )
            for hook in self.webhooks
            if hook.takes(event)
        ]
        session.add_all(rows)
        await session.flush()
        return rows

    def wake(self) -> None:
        self._wake.set()

    async def send_due(self) -> int:
        """Try every pending delivery that is due; returns how many were tried."""
        hooks = {hook.name: hook for hook in self.webhooks}
        now = self.now()
        async with self.database.session() as session:
            due = (
                await session.scalars(
                    select(NotificationDelivery)
                    .where(
                        NotificationDelivery.status == DeliveryStatus.PENDING,
                        or_(
                            NotificationDelivery.next_attempt_at.is_(None),
                            NotificationDelivery.next_attempt_at <= now,
                        ),
                    )
                    .order_by(NotificationDelivery.id)
                    .limit(100)
                )
            ).all()
            for delivery in due:
                hook = hooks.get(delivery.target)
                if hook is None:  # the webhook was taken out of the config
                    delivery.status = DeliveryStatus.FAILED
                    delivery.last_error = "no such webhook in the configuration"
                    continue
                await self._try(hook, delivery)
            await session.commit()
        return len(due)

    async def _try(self, hook: Webhook, delivery: NotificationDelivery) -> None:
        body = json.dumps(
            {"event": delivery.event, "delivery": delivery.id, **delivery.payload},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Lighthouse-Event": delivery.event,
            "X-Lighthouse-Delivery": str(delivery.id),
            "X-Lighthouse-Timestamp": timestamp,
            "X-Lighthouse-Signature": signature(hook.secret, timestamp, body),
        }
        delivery.attempts += 1
        error: str | None = None
        try:
            if self._http is None:
                self._http = aiohttp.ClientSession()
            timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
            async with self._http.post(
                hook.url, data=body, headers=headers, timeout=timeout
            ) as response:
                delivery.response_status = response.status
                if 200 <= response.status < 300:
                    delivery.status = DeliveryStatus.DELIVERED
                    delivery.delivered_at = self.now()
                    delivery.last_error = None
                    return
                error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # the exception's text can hold the URL (and so a token in it): its kind only
            error = type(exc).__name__
        delivery.last_error = error
        if delivery.attempts >= self.policy.max_attempts:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            logger.warning(
                "webhook %s: delivery %s failed after %d tries (%s)",
                hook.name,
                delivery.id,
                delivery.attempts,
                error,
            )
        else:
            retry = dt.timedelta(seconds=self.policy.delay(delivery.attempts))
            delivery.next_attempt_at = self.now() + retry

    async def start(self) -> None:
        if self.webhooks:
            self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception:
                logger.exception("webhook sender run failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                # pending retries are picked up within a few seconds of being due
                await asyncio.wait_for(self._wake.wait(), min(5.0, self.policy.first_retry_s))


CLOSED = {"type": "closed"}  # what a stream gets when the server stops


class LiveEvents:
    """Events for the pages that are open (the console, the secretary's phone): each
    subscriber gets those whose place it covers. In-process: the front serves them all."""

    def __init__(self, queue_size: int = 100) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[asyncio.Queue[dict], str] = {}

    def subscribe(self, org_path: str) -> asyncio.Queue[dict]:
        queue: asyncio.Queue[dict] = asyncio.Queue(self.queue_size)
        self._subscribers[queue] = org_path
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict]) -> None:
        self._subscribers.pop(queue, None)

    def close(self) -> None:
        """The server is stopping: every open stream ends now, not at its next write."""
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(CLOSED)

    def publish(self, event: dict, org_path: str) -> None:
        for queue, path in list(self._subscribers.items()):
            if org_path.startswith(path):
                with contextlib.suppress(asyncio.QueueFull):  # a stalled page reloads
                    queue.put_nowait(event)
