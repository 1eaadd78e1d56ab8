"""The staff console under /console: login, org tree, members, terminals (pairing), meetings,
recordings (spot-check playback).

Each page is a translated shell; console.js fills it from the JSON API (web/api) with the
httponly `lh_session` cookie that POST /api/login sets. The server only checks that the
cookie is present, to send a signed-out browser straight to the login page; the API
verifies it on every call, and the page goes to the login page when /api/me says 401.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from yarl import URL

from web.api.common import SESSION_COOKIE
from web.i18n import pick_locale
from web.pages import Handler, PageRenderer, kept_lang

LOGIN_PATH = "/console/login"
# A new terminal's default name is "<site>党群服务中心". It is data, not UI: the name is shown
# on the main venue's Chinese screen whatever language the admin reads, so it is not translated.
TERMINAL_NAME_SUFFIX = "党群服务中心"


def _safe_next(value: str) -> str:
    """Where to go after signing in: only a console page of this site (no open redirect)."""
    if value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console"


def _query_id(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def _signed_in(handler: Handler) -> Handler:
    """Without a session cookie, go to the login page and come back here afterwards."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        if not request.cookies.get(SESSION_COOKIE):
            query = {"next": str(request.rel_url)}
            if "lang" in request.query:
                query["lang"] = request.query["lang"]
            raise web.HTTPFound(str(URL(LOGIN_PATH).with_query(query)))
        return await handler(request)

    return wrapper


def add_console_routes(
    app: web.Application,
    *,
    renderer: PageRenderer | None = None,
    time_zone: str = "Asia/Shanghai",
) -> None:
    """Register /console, /console/login, /console/members, /console/terminals,
    /console/meetings, /console/meetings/{id} (and its sign-in sheet, .../signins), a
    member's face photos (/console/members/{id}/faces), /console/recordings,
    /console/recordings/{id},
    the supervision pages (/console/supervision, .../watch/{room}, .../patrol, .../log) and
    the emergency command view (/console/command) and duty attendance (/console/duty).
    Times are shown in `time_zone`, the county's."""
    pages = renderer if renderer is not None else PageRenderer()

    def page(request: web.Request, template: str, name: str, **config: Any) -> web.Response:
        config.update(
            page=name,
            lang=pick_locale(request),
            keepLang=kept_lang(request),
            loginPath=LOGIN_PATH,
            # The org unit the caller is looking at; absent means "my own".
            org=_query_id(request, "org"),
            timeZone=time_zone,
        )
        return pages.render(request, template, page_name=name, config=config)

    async def login(request: web.Request) -> web.Response:
        return page(
            request,
            "console_login.html",
            "login",
            next=_safe_next(request.query.get("next", "")),
        )

    @_signed_in
    async def tree(request: web.Request) -> web.Response:
        return page(request, "console_tree.html", "tree")

    @_signed_in
    async def members(request: web.Request) -> web.Response:
        return page(
            request,
            "console_members.html",
            "members",
            q=request.query.get("q", "")[:50],
            pageNumber=_query_id(request, "page") or 1,
            pageSize=20,
        )

    @_signed_in
    async def terminals(request: web.Request) -> web.Response:
        code = request.query.get("code", "").strip().upper()[:12]
        return page(
            request,
            "console_terminals.html",
            "terminals",
            code=code,
            nameSuffix=TERMINAL_NAME_SUFFIX,
        )

    @_signed_in
    async def meetings(request: web.Request) -> web.Response:
        return page(request, "console_meetings.html", "meetings")

    @_signed_in
    async def meeting(request: web.Request) -> web.Response:
        return page(
            request,
            "console_meeting.html",
            "meeting",
            meetingId=int(request.match_info["meeting_id"]),
        )

    @_signed_in
    async def signins(request: web.Request) -> web.Response:
        return page(
            request,
            "console_signins.html",
            "signins",
            meetingId=int(request.match_info["meeting_id"]),
        )

    @_signed_in
    async def faces(request: web.Request) -> web.Response:
        return page(
            request, "console_faces.html", "faces", memberId=int(request.match_info["member_id"])
        )

    @_signed_in
    async def recordings(request: web.Request) -> web.Response:
        return page(
            request,
            "console_recordings.html",
            "recordings",
            # only this meeting's recordings (from a meeting record's link); absent: all
            meeting=_query_id(request, "meeting"),
        )

    @_signed_in
    async def recording(request: web.Request) -> web.Response:
        return page(
            request,
            "console_recording.html",
            "recording",
            recordingId=int(request.match_info["recording_id"]),
        )

    @_signed_in
    async def supervision(request: web.Request) -> web.Response:
        return page(request, "console_supervision.html", "supervision")

    @_signed_in
    async def watch(request: web.Request) -> web.Response:
        return page(
            request,
            "console_watch.html",
            "watch",
            roomId=request.match_info["room_id"],
        )

    @_signed_in
    async def patrol(request: web.Request) -> web.Response:
        grid = _query_id(request, "grid")
        interval = _query_id(request, "interval")
        return page(
            request,
            "console_patrol.html",
            "patrol",
            grid=grid if grid in (2, 3) else 2,
            intervalS=min(max(interval or 20, 2), 600),
            scope=_query_id(request, "scope"),
            # the venues of live meetings, or the villages' duty rooms
            rooms="duty" if request.query.get("rooms") == "duty" else "meetings",
        )

    @_signed_in
    async def supervision_log(request: web.Request) -> web.Response:
        return page(request, "console_supervision_log.html", "supervisionLog")

    @_signed_in
    async def audit_log(request: web.Request) -> web.Response:
        return page(request, "console_audit.html", "audit")

    @_signed_in
    async def command(request: web.Request) -> web.Response:
        return page(request, "console_command.html", "command")

    @_signed_in
    async def duty(request: web.Request) -> web.Response:
        date = request.query.get("date", "")
        return page(
            request,
            "console_duty.html",
            "duty",
            date=date if re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) else None,
        )

    @_signed_in
    async def phone(request: web.Request) -> web.Response:
        # mobile-first and standalone: not the console's desktop frame
        return pages.render(
            request,
            "phone.html",
            config={
                "loginPath": LOGIN_PATH,
                "lang": pick_locale(request),
            },
        )

    router = app.router
    router.add_get(LOGIN_PATH, login)
    router.add_get("/console/phone", phone)
    router.add_get("/console", tree)
    router.add_get("/console/members", members)
    router.add_get("/console/terminals", terminals)
    router.add_get("/console/meetings", meetings)
    router.add_get("/console/meetings/{meeting_id:\\d{1,11}}", meeting)
    router.add_get("/console/meetings/{meeting_id:\\d{1,11}}/signins", signins)
    router.add_get("/console/members/{member_id:\\d{1,11}}/faces", faces)
    router.add_get("/console/recordings", recordings)
    router.add_get("/console/recordings/{recording_id:\\d{1,11}}", recording)
    router.add_get("/console/supervision", supervision)
    router.add_get("/console/supervision/watch/{room_id:[A-Za-z0-9_.-]{1,64}}", watch)
    router.add_get("/console/supervision/patrol", patrol)
    router.add_get("/console/supervision/log", supervision_log)
    router.add_get("/console/command", command)
    router.add_get("/console/audit", audit_log)
    router.add_get("/console/duty", duty)
