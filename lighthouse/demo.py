"""The demo meeting `make run` starts: one room, links with signed tokens for each role."""

from __future__ import annotations

from dataclasses import dataclass

from signaling.tokens import TokenIssuer

from .config import RoomConfig

DEMO_ROOM = RoomConfig(id="demo", name="演示会议：主题党日", video_codec="h264")


@dataclass(frozen=True)
class DemoLink:
    label: str
    url: str


def demo_links(base_url: str, tokens: TokenIssuer, room_id: str = DEMO_ROOM.id) -> list[DemoLink]:
    main = tokens.mint("venue-county-main", "县委主会场", room_id, "main")
    village = tokens.mint("terminal-village-001", "红星村党支部", room_id, "terminal")
    viewer = tokens.mint("viewer-demo", "手机参会", room_id, "viewer")
    return [
        DemoLink("main venue (主会场)", f"{base_url}/main?token={main}"),
        DemoLink("village terminal (村级电视终端)", f"{base_url}/tv?token={village}"),
        DemoLink("viewer (手机/电脑参会)", f"{base_url}/join?token={viewer}"),
    ]
