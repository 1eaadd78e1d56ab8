"""HTTP routes for the pages: index, TV terminal and its pairing screen, join (phone/PC),
main venue, static files; the staff console (web/console.py) is registered from here too.

The pages never check tokens: the token only travels to the browser, which presents
it on the WebSocket (meeting tokens) or to the JSON API (terminal and staff tokens), where
it is verified. A join or main-venue page without any token is a mistyped or truncated
link, so it gets a friendly explanation instead; a TV page without one is a paired
terminal, whose long-lived token sits in the TV browser's localStorage.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import segno
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

# What a TV's pairing code looks like (db/accounts.py draws 6 characters from an
# alphabet without 0/O/1/I); anything else is refused before it reaches a QR code.
PAIRING_CODE = re.compile(r"^[2-9A-HJ-NP-Z]{6}$")
# Where the QR code on the TV sends the admin's phone: the console's pairing form.
PAIRING_FORM_PATH = "/console/terminals"
# localStorage key under which a paired TV keeps its terminal token (read by terminal.js).
TERMINAL_TOKEN_KEY = "lighthouse.terminalToken"


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


def kept_lang(request: web.Request) -> str | None:
    """The locale to carry on to the next page: only one the address asked for, so that
    addresses without `?lang=` stay short (the default needs none)."""
    return pick_locale(request) if "lang" in request.query else None


class PageRenderer:
    """Renders a template in the request's language, with the headers every page carries.

    Built once per application: the Jinja environments and the static files' hash are
    computed at start-up, never per request.
    """

    def __init__(self, *, public_title: str = "Lighthouse") -> None:
        self.envs: Mapping[str, jinja2.Environment] = make_jinja_envs()
        self.static_version = _static_version(STATIC_DIR)
        self.public_title = public_title

    def render(
        self, request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        locale = pick_locale(request)
        other = _other_locale(locale)
        body = (
            self.envs[locale]
            .get_template(template)
            .render(
                lang=locale,
                html_lang=HTML_LANG[locale],
                public_title=self.public_title,
                static_version=self.static_version,
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


def qr_svg(text: str) -> bytes:
    """`text` as a QR code in a scalable SVG (no width/height: the page sizes it).

    Error correction M and a 4-module quiet zone: phones read it off a TV from a few metres.
    """
    buffer = io.BytesIO()
    segno.make(text, error="m").save(
        buffer,
        kind="svg",
        scale=1,
        border=4,
        xmldecl=False,
        omitsize=True,
        dark="#000",
        light="#fff",
        svgclass="qr",
    )
    return buffer.getvalue()


def pairing_url(origin: str, code: str) -> str:
    """The console address an admin's phone opens from the TV's QR code."""
    return f"{origin.rstrip('/')}{PAIRING_FORM_PATH}?code={code}"


def add_page_routes(
    app: web.Application,
    *,
    public_title: str = "Lighthouse",
    public_url: str | None = None,
    time_zone: str = "Asia/Shanghai",
) -> None:
    """Register `/`, `/tv`, `/tv/pair`, `/join`, `/main`, `/static/` and the `/console` pages.

    No page carries ICE servers: a client is given them (TURN credentials minted for it)
    in the signaling `joined` reply, once its token has been checked.
    `public_url` (e.g. "https://dangjian.example.gov.cn") is the origin the TV's QR code
    points at; without it, the origin the TV itself used to reach the server.
    """
    # Imported here: web.console builds on this module's PageRenderer.
    from web.console import add_console_routes

    renderer = PageRenderer(public_title=public_title)
    render = renderer.render

    async def index(request: web.Request) -> web.Response:
        return render(request, "index.html")

    def meeting_config(request: web.Request, mode: str) -> dict[str, Any]:
        # no token here: page.js reads it from the link's fragment (#token=…), which no
        # request carries, so it is in no access log of this server or a proxy before it
        return {
            "mode": mode,
            "token": None,
            "lang": pick_locale(request),
            "wsPath": "/ws",
            "keepLang": kept_lang(request),
        }

    def token_out_of_the_query(request: web.Request) -> None:
        """An older link with ?token=…: the same page with the token in the fragment, so
        that it leaves the address bar, the history and any later Referer."""
        token = request.query.get("token", "").strip()
        if not token:
            return
        rest = urlencode([(k, v) for k, v in request.query.items() if k != "token"])
        location = request.path + (f"?{rest}" if rest else "") + "#" + urlencode({"token": token})
        raise web.HTTPFound(
            location, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    def meeting_page(template: str, mode: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            token_out_of_the_query(request)
            return render(request, template, config=meeting_config(request, mode))

        return handler

    def terminal_page(kiosk: bool) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            token_out_of_the_query(request)
            # Ready for terminal mode: without a meeting token in its link, terminal.js
            # holds the lobby socket with the stored terminal token and the server pushes
            # a meeting token when a meeting calls this TV. A duty kiosk (/duty, a phone
            # or tablet at the duty room's door) is only ever sent on duty.
            config = meeting_config(request, "tv")
            config.update(
                terminal=True,
                kiosk=kiosk,
                terminalTokenKey=TERMINAL_TOKEN_KEY,
                lobbyPath="/ws/terminal",
                pairPath="/duty/pair" if kiosk else "/tv/pair",
                idleRetryMs=15_000,
                # the duty camera's hours as the county reads them, whatever the TV's clock
                timeZone=time_zone,
            )
            return render(request, "tv.html", config=config)

        return handler

    def pair_page(then: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return await tv_pair(request, then)

        return handler

    async def tv_pair(request: web.Request, then: str) -> web.Response:
        config = {
            "lang": pick_locale(request),
            "keepLang": kept_lang(request),
            "terminalTokenKey": TERMINAL_TOKEN_KEY,
            "pairingKey": "lighthouse.pairing",
            "pairingPath": "/api/terminals/pairing",
            "claimPath": "/api/terminals/pairing/claim",
            "qrPath": "/tv/pair/qr.svg",
            "tvPath": then,
            "pollMs": 2000,
        }
        origin = public_url.rstrip("/") if public_url else str(request.url.origin())
        return render(request, "tv_pair.html", config=config, console_url=f"{origin}/console")

    async def tv_pair_qr(request: web.Request) -> web.Response:
        code = request.query.get("code", "").strip().upper()
        if not PAIRING_CODE.match(code):
            raise web.HTTPBadRequest(text="code must be a 6-character pairing code")
        origin = public_url if public_url else str(request.url.origin())
        response = web.Response(
            body=qr_svg(pairing_url(origin, code)), content_type="image/svg+xml"
        )
        response.headers["Cache-Control"] = "private, max-age=900"  # a code lives 15 minutes
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'"
        return response

    app.router.add_get("/", index)
    app.router.add_get("/tv", terminal_page(kiosk=False))
    app.router.add_get("/tv/pair", pair_page("/tv"))
    app.router.add_get("/duty", terminal_page(kiosk=True))
    app.router.add_get("/duty/pair", pair_page("/duty"))
    app.router.add_get("/tv/pair/qr.svg", tv_pair_qr)
    app.router.add_get("/join", meeting_page("join.html", "join"))
    app.router.add_get("/main", meeting_page("main.html", "main"))
    app.router.add_static("/static/", STATIC_DIR)
    add_console_routes(app, renderer=renderer, time_zone=time_zone)
