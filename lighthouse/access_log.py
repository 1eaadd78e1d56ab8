"""The HTTP access log, without secrets: paths are logged, query strings never.

Page links carry meeting and TV tokens in their query string (`/main?token=…`); aiohttp's
default access log writes the whole request line, and a logged `/main` link was a way
into the meeting. This logs the method, the path, the status, the size and the time.
"""

from __future__ import annotations

from typing import Any

from aiohttp.abc import AbstractAccessLogger


class PathOnlyAccessLogger(AbstractAccessLogger):
    def log(self, request: Any, response: Any, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3f',
            request.remote,
            request.method,
            request.path,  # the path only: `?token=…` stays out of the log
            response.status,
            response.body_length,
            time,
        )
