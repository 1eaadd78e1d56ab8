"""The server's state for the county's IT office: GET /api/status (county admins).

What /healthz used to tell anyone: each media worker alive or not, each room's visible
peers and publications (hidden supervisors are never counted), the front's loop stall.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.models import Role
from lighthouse.keys import LOOP_LAG_KEY, PLANE_KEY, ROOMS_KEY

from .common import ApiError, authed, json_response


@authed
async def get_status(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    if principal.role != Role.COUNTY_ADMIN:
        raise ApiError(403, "forbidden", "the server's state is for the county's administrators")
    rooms = request.app[ROOMS_KEY]
    plane = request.app[PLANE_KEY]
    return json_response(
        {
            "loop_stall_ms": request.app[LOOP_LAG_KEY].recent_max_ms(10),
            # no per-worker peer counts: they would count hidden supervisors too
            "workers": {
                w.id: {"alive": w.alive} for w in plane.workers.values() if w.capacity != 0
            },
            "rooms": {
                rid: {"peers": len(r.peers), "publications": len(r.publications)}
                for rid, r in rooms.items()
            },
        }
    )
