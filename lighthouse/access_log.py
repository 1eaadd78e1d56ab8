"""The HTTP access log, without secrets: paths are logged, query strings never.

Older page links carried meeting tokens in their query string (`/main?token=…`; they
are redirected to the fragment now); aiohttp's default access log writes the whole
request line, and a logged `/main` link was a way into the meeting. This logs the client
(behind a trusted proxy, the address the proxy saw: lighthouse/proxies.py), the method,
the path, the status, the size and the time.
"""

from __future__ import annotations

from typing import Any

from aiohttp.abc import AbstractAccessLogger

from .proxies import CLIENT_ADDRESS


class PathOnlyAccessLogger(AbstractAccessLogger):
    def log(self, request: Any, response: Any, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3f',
            request.get(CLIENT_ADDRESS) or request.remote,
            request.method,
            request.path,  # the path only: `?token=…` stays out of the log
            response.status,
            response.body_length,
            time,
        )
