"""HTTP routes for the pages: index, TV terminal, join (phone/PC), main venue, static files.

The pages never check tokens: the token only travels to the browser, which presents
it on the WebSocket, where signaling verifies it. A page without any token is a
mistyped or truncated link, so it gets a friendly explanation instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from web.i18n import HTML_LANG, LOCALES, make_jinja_envs, pick_locale

STATIC_DIR = Path(__file__).resolve().parent / "static"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The pages run only our own files; the token sits in the page, so keep inline and
# other origins' scripts out. 'unsafe-eval' stays allowed because browser-test drivers
# (Playwright's wait_for_function with a string) evaluate strings; our code never does.
# ws:/wss: are listed because old TV browsers do not count a same-host WebSocket as 'self'.
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _static_version(static_dir: Path) -> str:
    """A short hash of the static files, appended as `?v=`: kiosk browsers cache hard."""
    digest = hashlib.sha256()
    if static_dir.is_dir():
        for path in sorted(p for p in static_dir.rglob("*") if p.is_file()):
            digest.update(path.relative_to(static_dir).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _other_locale(locale: str) -> str:
    return next(other for other in LOCALES if other != locale)


def add_page_routes(
    app: web.Application,
    *,
    ice_servers: list[dict[str, Any]],
    public_title: str = "Lighthouse",
) -> None:
    """Register `/`, `/tv`, `/join`, `/main` and `/static/` on `app`.

    `ice_servers` is handed to the browsers as RTCConfiguration.iceServers, e.g.
    `[{"urls": "turn:turn.example:3478", "username": "u", "credential": "p"}]`.
    """
    envs: Mapping[str, jinja2.Environment] = make_jinja_envs()
    static_version = _static_version(STATIC_DIR)
    # Copied so that a caller mutating its list later cannot change what pages show.
    ice = [dict(server) for server in ice_servers]

    def render(
        request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        locale = pick_locale(request)
        other = _other_locale(locale)
        body = (
            envs[locale]
            .get_template(template)
            .render(
                lang=locale,
                html_lang=HTML_LANG[locale],
                public_title=public_title,
                static_version=static_version,
                # Keeps the token (and any other parameter) when switching language.
                switch_lang_url=str(request.rel_url.update_query(lang=other)),
                switch_lang_label="English" if other == "en" else "中文",
                **context,
            )
        )
        response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        # Pages carry a token: never cache them, never leak the URL as a referrer.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["Content-Language"] = HTML_LANG[locale]
        return response

    async def index(request: web.Request) -> web.Response:
        return render(request, "index.html")

    def meeting_page(template: str, mode: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            token = request.query.get("token", "").strip()
            if not token:
                return render(request, "error.html", status=400, reason="missing_token")
            locale = pick_locale(request)
            config = {
                "mode": mode,
                "token": token,
                "iceServers": ice,
                "lang": locale,
                "wsPath": "/ws",
            }
            return render(request, template, token=token, ice_servers=ice, config=config)

        return handler

    app.router.add_get("/", index)
    app.router.add_get("/tv", meeting_page("tv.html", "tv"))
    app.router.add_get("/join", meeting_page("join.html", "join"))
    app.router.add_get("/main", meeting_page("main.html", "main"))
    app.router.add_static("/static/", STATIC_DIR)
