"""Queries and changes on the org tree that keep the materialised paths right."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CHILD_KINDS, Meeting, Member, OrgKind, OrgUnit, Terminal


class TreeError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


async def add_org(
    session: AsyncSession, *, parent: OrgUnit | None, code: str, name: str, kind: OrgKind
) -> OrgUnit:
    if parent is None and kind is not OrgKind.COUNTY:
        raise TreeError("parent_id", "only a county may stand at the top of the tree")
    if parent is not None and kind not in CHILD_KINDS[parent.kind]:
        raise TreeError("kind", f"a {parent.kind} cannot hold a {kind}")
    org = OrgUnit(
        code=code,
        name=name,
        kind=kind,
        parent_id=parent.id if parent else None,
        path="",
        depth=(parent.depth + 1) if parent else 0,
    )
    session.add(org)
    await session.flush()
    org.path = f"{parent.path if parent else '/'}{org.id}/"
    return org


async def children(session: AsyncSession, org: OrgUnit) -> list[OrgUnit]:
    rows = await session.execute(
        select(OrgUnit).where(OrgUnit.parent_id == org.id).order_by(OrgUnit.code)
    )
    return list(rows.scalars())


async def subtree_counts(
    session: AsyncSession, org: OrgUnit
) -> tuple[dict[str, int], dict[int, dict[str, int]]]:
    """Members and (unrevoked) terminals in this subtree, in total and per child unit.

    One grouped query per table, by distinct path (a branch's members share one), then
    summed per child in Python: the tree page needs every child's figures at once.
    """
    like = f"{org.path}%"
    member_rows = await session.execute(
        select(Member.org_path, func.count(Member.id))
        .where(Member.org_path.like(like))
        .group_by(Member.org_path)
    )
    terminal_rows = await session.execute(
        select(Terminal.org_path, func.count(Terminal.id))
        .where(Terminal.org_path.like(like), Terminal.revoked_at.is_(None))
        .group_by(Terminal.org_path)
    )
    total = {"members": 0, "terminals": 0}
    per_child: dict[int, dict[str, int]] = {}
    for key, rows in (("members", member_rows), ("terminals", terminal_rows)):
        for path, count in rows:
            assert path is not None  # LIKE never matches a NULL org_path
            total[key] += count
            child = path[len(org.path) :].split("/", 1)[0]
            if child.isdigit():
                figures = per_child.setdefault(int(child), {"members": 0, "terminals": 0})
                figures[key] += count
    return total, per_child


async def find_by_code(session: AsyncSession, code: str) -> OrgUnit | None:
    return (await session.execute(select(OrgUnit).where(OrgUnit.code == code))).scalar_one_or_none()


async def root_org(session: AsyncSession) -> OrgUnit | None:
    """The county: where things that belong to no smaller unit are kept."""
    return await session.scalar(
        select(OrgUnit).where(OrgUnit.parent_id.is_(None)).order_by(OrgUnit.id).limit(1)
    )


async def root_path(session: AsyncSession) -> str | None:
    root = await root_org(session)
    return root.path if root else None


async def organiser(session: AsyncSession, org_code: str | None) -> OrgUnit | None:
    """A room's organising unit by its code; a room without one belongs to the county."""
    if org_code:
        return await find_by_code(session, org_code)
    return await root_org(session)


def related(org_path: str, room_path: str | None) -> bool:
    """Whether a caller at org_path belongs to a room organised at room_path: inside the
    organiser's subtree (a village of a town meeting) or above it (the county); a room
    without an organiser (None) is the whole county's."""
    if room_path is None:
        return True
    return room_path.startswith(org_path) or org_path.startswith(room_path)


async def meeting_site_paths(session: AsyncSession, meeting: Meeting) -> list[str]:
    """Where a meeting's TVs are: its sites' paths (the organiser's when none are listed).

    TVs stand in villages; a branch meets in front of its village's TV, so a branch site
    stands for its village (a town or the county stands for every village below it)."""
    units = [await session.get(OrgUnit, site.org_id) for site in meeting.sites]
    if not units:
        units = [await session.get(OrgUnit, meeting.organiser_id)]
    paths = []
    for unit in units:
        if unit is None:
            continue
        if unit.kind == OrgKind.BRANCH and unit.parent_id is not None:
            unit = await session.get(OrgUnit, unit.parent_id) or unit
        paths.append(unit.path)
    return list(dict.fromkeys(paths))


async def meeting_member_paths(session: AsyncSession, meeting: Meeting) -> list[str]:
    """Whose members a meeting expects: its sites' own subtrees (a branch site its own
    members only, a village all its branches', a town all its villages'), else the
    organiser's."""
    units = [await session.get(OrgUnit, site.org_id) for site in meeting.sites]
    paths = [unit.path for unit in units if unit is not None]
    return list(dict.fromkeys(paths)) or [meeting.org_path]


async def count_expected_members(session: AsyncSession, paths: list[str]) -> int:
    """应到: the members under `paths` who are not excused from meetings."""
    if not paths:
        return 0
    count = await session.scalar(
        select(func.count(Member.id)).where(
            or_(*(Member.org_path.like(f"{path}%") for path in paths)),
            Member.exempt_reason.is_(None),
        )
    )
    return int(count or 0)
