"""A plausible demo county: towns, villages, party branches, members, paired TVs, staff.

`plan_county` draws everything from one `random.Random(seed)`, so a seed always gives the
same county (names, dates, ids and paths); `create_demo_county` writes it into an empty
database with bulk INSERTs in one transaction, which loads ~30,000 members in seconds.
Ids are assigned here, not by the database, so paths ("/1/5/77/") are known before the
rows exist and follow the rule of `db.tree.add_org`: parent's path + own id + "/".
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from .accounts import hash_password
from .database import Database
from .duty.demo import HISTORY_DAYS, create_demo_duty
from .models import (
    Base,
    ExemptReason,
    Gender,
    Member,
    MemberStatus,
    OrgKind,
    OrgUnit,
    Post,
    Role,
    StaffAccount,
    Terminal,
    TerminalKind,
    utcnow,
)

DEFAULT_TOWNS = 17
DEFAULT_VILLAGES_PER_TOWN = 59  # 17 x 59 = 1,003 villages and communities
DEFAULT_MEMBERS = 30_000
DEFAULT_SEED = 2026

# The day the data describes (ages, probation). Fixed, so a seed gives the same dates
# whenever it runs; in the past, so the API's "not in the future" checks accept them.
AS_OF = dt.date(2026, 7, 1)
COUNTY_NAME = "青山县"
# shaped like a statistical division code (6 digits); prefecture "99" exists nowhere
COUNTY_CODE = "369901"
COUNTY_VENUES = ("县委主会场", "县委组织部会议室", "县行政中心会议室")
ADMIN_USERNAME = "admin"

_CHUNK = 5_000  # rows per bulk INSERT: bounded memory, few round trips

# -- names ----------------------------------------------------------------------------------

# The commonest surnames with their approximate shares (per cent, 2020 census).
_SURNAMES = (
    ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.6), ("杨", 3.1), ("黄", 2.5),
    ("赵", 2.3), ("吴", 2.0), ("周", 1.9), ("徐", 1.5), ("孙", 1.5), ("马", 1.3), ("朱", 1.3),
    ("胡", 1.3), ("郭", 1.2), ("何", 1.2), ("林", 1.1), ("高", 1.1), ("罗", 1.0), ("郑", 1.0),
    ("梁", 0.8), ("谢", 0.8), ("宋", 0.7), ("唐", 0.7), ("许", 0.6), ("韩", 0.6), ("邓", 0.6),
    ("冯", 0.6), ("曹", 0.6), ("彭", 0.5), ("曾", 0.5), ("肖", 0.5), ("田", 0.5), ("董", 0.5),
    ("潘", 0.4), ("袁", 0.4), ("蔡", 0.4), ("蒋", 0.4), ("余", 0.4), ("于", 0.4), ("杜", 0.4),
    ("叶", 0.4), ("程", 0.3), ("魏", 0.3), ("苏", 0.3), ("吕", 0.3), ("丁", 0.3), ("任", 0.3),
    ("卢", 0.3), ("姚", 0.3), ("沈", 0.3), ("钟", 0.3), ("姜", 0.3), ("崔", 0.3), ("谭", 0.3),
    ("陆", 0.3), ("范", 0.2), ("汪", 0.2), ("廖", 0.2), ("石", 0.2), ("金", 0.2), ("贾", 0.2),
    ("夏", 0.2), ("付", 0.2), ("方", 0.2), ("邹", 0.2), ("熊", 0.2), ("白", 0.2), ("孟", 0.2),
    ("秦", 0.2), ("邱", 0.2), ("侯", 0.2), ("江", 0.2), ("尹", 0.2), ("薛", 0.2), ("段", 0.2),
    ("雷", 0.2), ("黎", 0.2), ("史", 0.2), ("陶", 0.2), ("贺", 0.2), ("毛", 0.2), ("郝", 0.2),
    ("顾", 0.2), ("龚", 0.2), ("邵", 0.2), ("万", 0.2), ("武", 0.2), ("钱", 0.2), ("戴", 0.2),
    ("严", 0.2), ("莫", 0.2), ("孔", 0.2), ("向", 0.1), ("常", 0.1), ("汤", 0.1), ("康", 0.1),
)  # fmt: skip

# Given-name characters by generation: those born before 1975 and those born later.
_GIVEN = {
    (Gender.MALE, "old"): (
        "建国军民华明德福贵荣发祥成林山根宝才忠义兴正兵卫东新庆树金有永长春生海文志红平富昌保顺全元",
        "国民华明军强平林生才发福贵荣祥成山根宝忠义兴东新庆树金海文志武良英峰刚喜勇斌田云宏茂",
    ),
    (Gender.MALE, "young"): (
        "伟志俊浩子宇文晓家佳建明振天鹏博嘉思泽一雨少亚永云海",
        "伟强磊军勇杰涛斌超明刚辉鹏华飞鑫波宇浩凯健俊帆旭宁龙林欢阳轩豪然杨峰亮",
    ),
    (Gender.FEMALE, "old"): (
        "秀桂玉淑凤兰春金素翠美月红丽小冬爱彩巧香玉银菊",
        "英兰珍华芳梅琴云莲萍红霞花凤荣娥香芬妹秀娟仙菊英兰",
    ),
    (Gender.FEMALE, "young"): (
        "晓丽雅静思欣佳雨梦婷诗子小文海慧美秀玉亚春",
        "娜敏静丽艳娟霞婷雪慧倩洁颖琳佳欣月莉芳燕玲萍蕾琪怡涵璐",
    ),
}

_STREET_STEMS = ("城东", "城西", "城南", "城北", "文昌", "滨江", "凤凰山", "朝阳")
_TOWN_STEMS = (
    "东风", "红旗", "青石", "白沙", "柳林", "桥头", "龙泉", "杨家", "石门", "高桥", "新田",
    "黄土", "马坪", "清水", "大河", "双井", "凤凰", "三合", "太平", "永安", "金山", "梅林",
    "长岭", "花桥", "古城", "水口", "黄坪", "枫树", "李家", "上河", "观音", "茶园", "五里",
    "潭头", "沙湾", "官庄", "新安", "罗坪", "泉水", "松林", "两河", "安乐", "白果", "铁炉",
)  # fmt: skip
_COMMUNITY_STEMS = (
    "文昌", "滨河", "育才", "人民路", "解放路", "建设", "长青", "锦绣", "新城", "春晖",
    "阳光", "和谐", "花园", "东门", "西门", "南关", "北关", "府前", "康乐", "学府", "广场",
    "车站", "西湖", "东湖", "紫荆", "桂花", "状元", "书院", "沿江", "新华", "胜利", "向阳",
    "幸福", "富民", "安居", "祥和", "金桥", "兴隆", "振兴", "丽景", "翠屏", "文化路", "中山路",
    "鼓楼", "钟楼", "水岸", "新街", "老街", "南门", "北门", "迎宾", "银杏", "玉泉", "望江",
)  # fmt: skip
# Village names: a one-character feature after a prefix ("石桥", "王家庄"), or a name from
# the collectivisation years ("红星", "前进").
_VILLAGE_PREFIXES = "东西南北上下大小前后新老高石柳杏桃枣松竹梨马牛龙凤金青白红黄沙水河山岭塘田"
_CLAN_PREFIXES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩邓冯曹彭曾肖田"
_VILLAGE_FEATURES = "庄湾坪岭沟河塘坝桥集店寨营堡坡岗洼峪口屯园林山头台埠井圩畈冲"
_ERA_NAMES = (
    "红星", "前进", "胜利", "光明", "新华", "和平", "团结", "幸福", "建设", "东风", "联合",
    "民主", "先锋", "友谊", "永红", "红旗", "向阳", "五星", "曙光", "新民", "跃进", "红光",
)  # fmt: skip
_GROUP_NUMERALS = "一二三四"
_WORK_PLACES = (
    "广东东莞", "广东深圳", "广东佛山", "浙江宁波", "浙江义乌", "江苏苏州", "福建晋江",
    "上海", "北京", "湖北武汉", "新疆乌鲁木齐",
)  # fmt: skip
_MOBILE_PREFIXES = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
    "155", "157", "158", "159", "177", "180", "181", "182", "183", "186", "187", "188",
    "189", "199",
)  # fmt: skip

# (first year of the decade, share): rural members are old.
_BIRTH_DECADES = (
    (1930, 3), (1940, 12), (1950, 21), (1960, 22), (1970, 16), (1980, 13), (1990, 11), (2000, 2),
)  # fmt: skip
# education by decade of birth (the older, the less schooling)
_EDUCATION = {
    1930: (("小学", 60), ("初中", 32), ("高中", 7), ("中专", 1)),
    1940: (("小学", 52), ("初中", 36), ("高中", 9), ("中专", 3)),
    1950: (("小学", 30), ("初中", 45), ("高中", 18), ("中专", 5), ("大专", 2)),
    1960: (("小学", 12), ("初中", 48), ("高中", 25), ("中专", 8), ("大专", 6), ("本科", 1)),
    1970: (("小学", 4), ("初中", 40), ("高中", 25), ("中专", 12), ("大专", 14), ("本科", 5)),
    1980: (("初中", 18), ("高中", 20), ("中专", 14), ("大专", 28), ("本科", 20)),
    1990: (("初中", 6), ("高中", 12), ("中专", 12), ("大专", 35), ("本科", 33), ("研究生", 2)),
    2000: (("高中", 10), ("中专", 12), ("大专", 40), ("本科", 36), ("研究生", 2)),
}


def villages_per_town_for(members: int, towns: int = DEFAULT_TOWNS) -> int:
    """About 30 members a village, as in the full county; at most the full county's 59."""
    return max(1, min(DEFAULT_VILLAGES_PER_TOWN, round(members / 30 / max(towns, 1))))


class DemoDataError(ValueError):
    """The demo county cannot be made here: the database is not empty, or bad sizes."""


@dataclass(frozen=True)
class _Org:
    id: int
    code: str
    name: str
    kind: OrgKind
    parent_id: int | None
    path: str  # the rule of db.tree.add_org: parent's path + own id + "/"
    depth: int


@dataclass
class CountyPlan:
    """Every row of the demo county, ready for bulk INSERT (org ids assigned)."""

    orgs: list[_Org] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)
    terminals: list[dict[str, Any]] = field(default_factory=list)
    # (username, display name, role, org id); all share one password
    accounts: list[tuple[str, str, Role, int]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        kinds = [o.kind for o in self.orgs]
        return {
            "towns": kinds.count(OrgKind.TOWN),
            "villages": kinds.count(OrgKind.VILLAGE),
            "communities": sum(
                o.kind is OrgKind.VILLAGE and o.name.endswith("社区") for o in self.orgs
            ),
            "branches": kinds.count(OrgKind.BRANCH),
            "groups": kinds.count(OrgKind.GROUP),
            "members": len(self.members),
            "probationary": sum(m["status"] is MemberStatus.PROBATIONARY for m in self.members),
            "exempt": sum(m["exempt_reason"] is not None for m in self.members),
            "terminals": len(self.terminals),
            "accounts": len(self.accounts),
        }


class _Weighted:
    """rng.choices for one fixed table, without rebuilding the cumulative weights."""

    def __init__(self, table: Iterable[tuple[Any, float]]) -> None:
        self.values, weights = zip(*table, strict=True)
        self.cumulative = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> Any:
        x = rng.random() * self.cumulative[-1]
        return self.values[bisect.bisect_right(self.cumulative, x)]


def _apportion(total: int, weights: Sequence[float], minimum: int) -> list[int]:
    """Split `total` in proportion to `weights`, each share at least `minimum`."""
    spare = total - minimum * len(weights)
    raw = [spare * w / sum(weights) for w in weights]
    shares = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: shares[i] - raw[i])
    for i in by_remainder[: spare - sum(shares)]:
        shares[i] += 1
    return [s + minimum for s in shares]


def eighteenth_birthday(birth: dt.date) -> dt.date:
    try:
        return birth.replace(year=birth.year + 18)
    except ValueError:  # born on 29 February
        return dt.date(birth.year + 18, 3, 1)


def _village_stems(rng: random.Random) -> list[str]:
    stems = [p + f for p in _VILLAGE_PREFIXES for f in _VILLAGE_FEATURES if p != f]
    stems += [c + "家" + f for c in _CLAN_PREFIXES for f in _VILLAGE_FEATURES[:12]]
    stems += list(_ERA_NAMES)
    rng.shuffle(stems)
    return stems


class _People:
    """Draws one party member at a time; all randomness comes from the county's rng."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.surnames = _Weighted(_SURNAMES)
        self.decades = _Weighted(_BIRTH_DECADES)
        self.education = {d: _Weighted(t) for d, t in _EDUCATION.items()}

    def date_between(self, first: dt.date, last: dt.date) -> dt.date:
        return dt.date.fromordinal(self.rng.randint(first.toordinal(), last.toordinal()))

    def name(self, gender: Gender, born: int, clan: str | None) -> str:
        rng = self.rng
        # a village named 王家庄 is mostly 王s
        surname = clan if clan and rng.random() < 0.45 else self.surnames.pick(rng)
        firsts, seconds = _GIVEN[gender, "old" if born < 1975 else "young"]
        if rng.random() < 0.22:
            return surname + rng.choice(seconds)
        return surname + rng.choice(firsts) + rng.choice(seconds)

    def member(self, clan: str | None) -> dict[str, Any]:
        rng = self.rng
        probationary = rng.random() < 0.05
        if probationary:  # joined in the last year, mostly young; 18 by then
            born_year = AS_OF.year - 19 - min(int(rng.expovariate(1 / 9)), 35)
        else:  # 18 and a year's probation behind them: born 20 or more years ago
            decade = self.decades.pick(rng)
            born_year = decade + rng.randrange(min(10, AS_OF.year - 19 - decade))
        birth = self.date_between(dt.date(born_year, 1, 1), dt.date(born_year, 12, 31))
        female_share = 0.16 if born_year < 1960 else 0.27 if born_year < 1980 else 0.4
        gender = Gender.FEMALE if rng.random() < female_share else Gender.MALE
        at_18 = eighteenth_birthday(birth)
        if probationary:
            joined = max(AS_OF - dt.timedelta(days=rng.randint(20, 360)), at_18)
        else:
            # most join in their twenties; a formal member has served a year's probation
            latest = AS_OF - dt.timedelta(days=366)
            joined = at_18 + dt.timedelta(days=int(rng.expovariate(1 / 9) * 365.25))
            if joined > latest:
                joined = self.date_between(min(at_18, latest), latest)
        age = AS_OF.year - born_year
        exempt, note = self.exemption(age)
        return {
            "name": self.name(gender, born_year, clan),
            "gender": gender,
            "birth_date": birth,
            "education": self.education[min(born_year // 10 * 10, 2000)].pick(rng),
            "joined_date": joined,
            "status": MemberStatus.PROBATIONARY if probationary else MemberStatus.FORMAL,
            "exempt_reason": exempt,
            "exempt_note": note,
            "posts": [],
            "phone": self.phone(age),
        }

    def exemption(self, age: int) -> tuple[ExemptReason | None, str | None]:
        # about 8% in all: migrant workers, then the very old and the ill
        rng = self.rng
        x = rng.random()
        if 20 <= age <= 55 and x < 0.105:
            return ExemptReason.WORKING_AWAY, f"在{rng.choice(_WORK_PLACES)}务工，已请假"
        if age >= 80 and x < 0.3:
            return ExemptReason.ELDERLY_INFIRM, "年老体弱，行动不便"
        if x > 0.994:
            return ExemptReason.SERIOUSLY_ILL, "患病长期治疗"
        if x > 0.9925:
            return ExemptReason.OTHER, "长期在外地照顾子女"
        if 20 <= age <= 60 and x > 0.9915:
            return ExemptReason.ABROAD, "出国务工"
        return None, None

    def phone(self, age: int) -> str | None:
        rng = self.rng
        if rng.random() < (0.35 if age >= 75 else 0.04):
            return None
        return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _assign_posts(rng: random.Random, people: list[dict[str, Any]]) -> set[int]:
    """Give a branch its secretary, committee and village cadres; return the committee."""

    def age(m: dict[str, Any]) -> int:
        return AS_OF.year - m["birth_date"].year

    formal = [i for i, m in enumerate(people) if m["status"] is MemberStatus.FORMAL]
    if not formal:  # a branch needs a formal member to lead it
        people[0]["status"] = MemberStatus.FORMAL
        formal = [0]
    prime = [i for i in formal if 32 <= age(people[i]) <= 62] or formal
    secretary = rng.choice(prime)
    posts: dict[int, list[Post]] = {secretary: [Post.SECRETARY]}
    # a branch of seven or more elects a committee; a smaller one only a secretary
    if len(people) >= 7:
        others = [i for i in formal if i != secretary and age(people[i]) <= 70] or [
            i for i in formal if i != secretary
        ]
        size = min(len(others), rng.choice((2, 2, 3, 4)) if len(people) >= 15 else 2)
        committee = rng.sample(others, size)
        if size >= 3 and rng.random() < 0.5:
            posts[committee.pop()] = [Post.DEPUTY_SECRETARY]
        for i in committee:
            posts[i] = [Post.COMMITTEE_MEMBER]
    committee_ids = set(posts)
    # the secretary usually also chairs the village committee (一肩挑)
    if rng.random() < 0.8:
        posts[secretary].append(Post.VILLAGE_CADRE)
    working = [i for i in formal if 25 <= age(people[i]) <= 60 and i != secretary] or formal
    for i in rng.sample(working, min(len(working), rng.randint(1, 3))):
        posts.setdefault(i, []).append(Post.VILLAGE_CADRE)
    for i, held in posts.items():
        people[i]["posts"] = sorted({p.value for p in held}, key=list(Post).index)
    return committee_ids


def plan_county(
    *,
    towns: int = DEFAULT_TOWNS,
    villages_per_town: int = DEFAULT_VILLAGES_PER_TOWN,
    members: int = DEFAULT_MEMBERS,
    seed: int = DEFAULT_SEED,
) -> CountyPlan:
    """The whole county in memory, deterministic for the arguments."""
    villages_total = towns * villages_per_town
    if not 1 <= towns <= len(_TOWN_STEMS):
        raise DemoDataError(f"towns must be between 1 and {len(_TOWN_STEMS)}")
    if not 1 <= villages_per_town <= 150:
        raise DemoDataError("villages per town must be between 1 and 150")
    if members < 3 * villages_total:
        raise DemoDataError(
            f"{villages_total} villages need at least {3 * villages_total} members "
            "(three per party branch)"
        )
    rng = random.Random(seed)
    county = CountyPlan()
    ids = itertools.count(1)

    def org(code: str, name: str, kind: OrgKind, parent: _Org | None) -> _Org:
        own = next(ids)
        if parent is None:
            unit = _Org(own, code, name, kind, None, f"/{own}/", 0)
        else:
            unit = _Org(own, code, name, kind, parent.id, f"{parent.path}{own}/", parent.depth + 1)
        county.orgs.append(unit)
        return unit

    top = org(COUNTY_CODE, COUNTY_NAME, OrgKind.COUNTY, None)

    # towns in the official order: streets (001..), the seat town, towns (1xx), townships (2xx)
    streets = round(towns * 0.12) if towns >= 5 else 0
    rest = towns - streets - 1
    townships = round(rest * 0.35)
    town_stems = rng.sample(_TOWN_STEMS, towns)
    town_plan: list[tuple[str, str, str]] = []  # (code, name, kind of town)
    for i, stem in enumerate(rng.sample(_STREET_STEMS, streets)):
        town_plan.append((f"{i + 1:03d}", f"{stem}街道", "street"))
    town_plan.append(("100", "城关镇", "seat"))
    for i in range(rest - townships):
        town_plan.append((f"{101 + i}", f"{town_stems[i]}镇", "town"))
    for i in range(townships):
        town_plan.append((f"{200 + i + 1}", f"{town_stems[rest - townships + i]}乡", "township"))

    weights = [rng.uniform(0.6, 1.4) * (0.4 if k == "street" else 1.0) for _, _, k in town_plan]
    per_town = _apportion(villages_total, weights, 1)
    town_units = [org(COUNTY_CODE + code, name, OrgKind.TOWN, top) for code, name, _ in town_plan]

    # villages and communities: community codes 001.., village codes 201..
    village_stems = iter(_village_stems(rng))
    community_stems = iter(rng.sample(_COMMUNITY_STEMS, len(_COMMUNITY_STEMS)))
    used: set[str] = set()

    def fresh(stems: Iterable[str], suffix: str) -> str:
        for stem in stems:
            if stem + suffix not in used:
                used.add(stem + suffix)
                return stem + suffix
        raise DemoDataError("ran out of village names")  # pragma: no cover - ~2,000 stems

    villages: list[tuple[_Org, bool]] = []  # (village, is a community)
    for town, (_, town_name, kind), count in zip(town_units, town_plan, per_town, strict=True):
        if kind == "street":
            communities = max(1, round(count * 0.8))
        elif kind == "seat":
            communities = round(count * 0.35)
        elif kind == "town":
            communities = (count >= 8) + (count >= 30 and rng.random() < 0.4)
        else:
            communities = int(count >= 10 and rng.random() < 0.5)
        for n in range(count):
            if n < communities:
                # a town's first community takes the town's name (the market town)
                if n == 0 and kind in ("town", "township") and town_name[:-1] + "社区" not in used:
                    name = fresh([town_name[:-1]], "社区")
                else:
                    name = fresh(itertools.chain(community_stems, village_stems), "社区")
                code = f"{town.code}{n + 1:03d}"
            else:
                name = fresh(village_stems, "村")
                code = f"{town.code}{201 + n - communities:03d}"
            villages.append((org(code, name, OrgKind.VILLAGE, town), n < communities))

    # one branch per village, a few large ones split into party groups
    sizes = _apportion(
        members,
        [rng.lognormvariate(0, 0.45) * (1.3 if community else 1.0) for _, community in villages],
        3,
    )
    branches = [
        org(f"{village.code}-01", f"{village.name}党支部", OrgKind.BRANCH, village)
        for village, _ in villages
    ]
    group_counts = [
        (2 if size < 50 else rng.choice((2, 3))) if size >= 25 and rng.random() < 0.3 else 0
        for size in sizes
    ]
    # groups after all branches, so that ids go level by level like the rest
    branch_groups = [
        [
            org(f"{branch.code}-{g + 1}", f"第{_GROUP_NUMERALS[g]}党小组", OrgKind.GROUP, branch)
            for g in range(count)
        ]
        for branch, count in zip(branches, group_counts, strict=True)
    ]

    people = _People(rng)
    plans = zip(villages, branches, branch_groups, sizes, strict=True)
    for (village, _), branch, groups, size in plans:
        clan = village.name[0] if village.name[1:2] == "家" else None
        roster = [people.member(clan) for _ in range(size)]
        committee = _assign_posts(rng, roster)
        ordinary = [i for i in range(size) if i not in committee]
        # the committee sits on the branch; everyone else in a group, when there are groups
        homes = {i: branch for i in committee}
        for n, i in enumerate(rng.sample(ordinary, len(ordinary))):
            homes[i] = groups[n % len(groups)] if groups else branch
        for group in groups:
            in_group = [i for i in ordinary if homes[i] is group]
            leaders = [i for i in in_group if roster[i]["status"] is MemberStatus.FORMAL]
            if leaders:
                leader = roster[rng.choice(leaders)]
                leader["posts"] = sorted(
                    {*leader["posts"], Post.GROUP_LEADER.value}, key=list(Post).index
                )
        for i, person in enumerate(roster):
            person["branch_id"] = homes[i].id
            person["org_path"] = homes[i].path
            county.members.append(person)

    # TVs: the county's venues, one per town hall, one per village service centre
    def tv(unit: _Org, name: str, paired: dt.datetime) -> None:
        county.terminals.append(
            {
                "org_id": unit.id,
                "org_path": unit.path,
                "name": name,
                "kind": TerminalKind.TV,
                "paired_at": paired,
                "token_collected": False,
                "online": False,
            }
        )

    rollout = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    for venue in COUNTY_VENUES:
        tv(top, venue, rollout)
    for town in town_units:
        tv(town, f"{town.name}党委会议室", rollout + dt.timedelta(days=rng.randint(1, 14)))
    for village, _ in villages:
        paired = rollout + dt.timedelta(days=rng.randint(7, 100), minutes=rng.randint(0, 600))
        tv(village, f"{village.name}党群服务中心", paired)

    county.accounts.append((ADMIN_USERNAME, "县委组织部管理员", Role.COUNTY_ADMIN, top.id))
    for n, town in enumerate(town_units, 1):
        county.accounts.append((f"town{n:02d}", f"{town.name}组织委员", Role.TOWN_ADMIN, town.id))
    return county


async def _bulk_insert(
    session: AsyncSession,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    step: str,
    progress: Callable[[str], None],
) -> None:
    # Core executemany, not the ORM's bulk mode: four times faster on SQLite
    table = model.__table__
    assert isinstance(table, Table)  # a declarative model's table
    statement = insert(table)
    for start in range(0, len(rows), _CHUNK):
        await session.execute(statement, list(rows[start : start + _CHUNK]))
        progress(f"{step}: {min(start + _CHUNK, len(rows))}/{len(rows)}")


async def create_demo_county(
    database: Database,
    *,
    admin_password: str,
    towns: int = DEFAULT_TOWNS,
    villages_per_town: int = DEFAULT_VILLAGES_PER_TOWN,
    members: int = DEFAULT_MEMBERS,
    seed: int = DEFAULT_SEED,
    progress: Callable[[str], None] | None = None,
    duty_zone: ZoneInfo | None = None,
    duty_days: int = HISTORY_DAYS,
) -> dict[str, int]:
    """Write the demo county into `database` (migrated, with no org units yet).

    Accounts: `admin` (county admin) and `town01`... (one town admin per town), all with
    `admin_password`. Duty attendance (db/duty/demo.py): the county's hours, every
    village's roster and `duty_days` of history up to yesterday in `duty_zone` (the
    county's; default Asia/Shanghai), judged by the duty watch; 0 days: none of it.
    Returns the counts of what was made.
    """
    say = progress or (lambda _: None)
    async with database.session() as session, session.begin():
        existing = await session.scalar(select(func.count()).select_from(OrgUnit))
        if existing:
            raise DemoDataError(
                f"the database already has an org tree ({existing} org units); "
                "the demo county goes only into an empty database"
            )
        county = plan_county(
            towns=towns, villages_per_town=villages_per_town, members=members, seed=seed
        )
        say(f"planned {len(county.orgs)} org units and {len(county.members)} members")
        # one hash for every account: argon2 is slow on purpose
        password_hash = hash_password(admin_password)
        now = utcnow()
        org_rows = [
            {
                "id": o.id,
                "code": o.code,
                "name": o.name,
                "kind": o.kind,
                "parent_id": o.parent_id,
                "path": o.path,
                "depth": o.depth,
                "created_at": now,
            }
            for o in county.orgs
        ]
        await _bulk_insert(session, OrgUnit, org_rows, "org units", say)
        if database.dialect == "postgresql":
            # ids were given explicitly: move the sequence past them for later inserts
            await session.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('org_units', 'id'), "
                    "(SELECT max(id) FROM org_units))"
                )
            )
        stamps = {"created_at": now, "updated_at": now}
        members_rows = [{**m, **stamps} for m in county.members]
        await _bulk_insert(session, Member, members_rows, "members", say)
        terminal_rows = [{**t, "created_at": now} for t in county.terminals]
        await _bulk_insert(session, Terminal, terminal_rows, "terminals", say)
        account_rows = [
            {
                "username": username,
                "display_name": display,
                "password_hash": password_hash,
                "role": role,
                "org_id": org_id,
                "active": True,
                "created_at": now,
            }
            for username, display, role, org_id in county.accounts
        ]
        await _bulk_insert(session, StaffAccount, account_rows, "accounts", say)
        if database.dialect == "postgresql":
            # statistics now, not whenever autovacuum gets to it in the middle of a demo
            await session.execute(text("ANALYZE"))
    counts = county.counts()
    if duty_days > 0:
        counts |= await create_demo_duty(
            database,
            zone=duty_zone or ZoneInfo("Asia/Shanghai"),
            days=duty_days,
            seed=seed,
            progress=say,
        )
    return counts
