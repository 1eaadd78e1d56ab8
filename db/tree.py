"""Queries and changes on the org tree that keep the materialised paths right."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CHILD_KINDS, Member, OrgKind, OrgUnit, Terminal


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


async def subtree_counts(session: AsyncSession, org: OrgUnit) -> dict[str, int]:
    """How many members and terminals sit anywhere below (and at) this org unit."""
    like = f"{org.path}%"
    members = await session.scalar(select(func.count(Member.id)).where(Member.org_path.like(like)))
    terminals = await session.scalar(
        select(func.count(Terminal.id)).where(
            Terminal.org_path.like(like), Terminal.revoked_at.is_(None)
        )
    )
    return {"members": int(members or 0), "terminals": int(terminals or 0)}


async def find_by_code(session: AsyncSession, code: str) -> OrgUnit | None:
    return (await session.execute(select(OrgUnit).where(OrgUnit.code == code))).scalar_one_or_none()
