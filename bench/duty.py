"""Duty attendance benchmark: what a duty camera costs, how soon a cadre is clocked in,
and what closing a month costs for a county.

Everything uses the server's own objects: `CameraWatcher` with the duty sampling
(`DUTY_SAMPLING`), `DutyPipeline`, the `YuNetSFace` engine, `close_period`.

1. **Duty cameras per core.** A duty room is composed from the test faces
   (tests/faces.py): two cadres at the desk, heads moving, H.264 baseline 640x360,
   15 fps, 400 kbit/s, a keyframe each second (an IP camera's usual GOP). Its encoded
   frames are fed to one watcher as fast as it keeps up (arrival times 1/15 s apart);
   once both cadres are decided, the CPU time of the whole process (every thread) over
   the rest is the steady cost. cameras/core = seconds of media / CPU seconds. The RTSP
   ingest (PyAV demuxing the same stream from a file, no decoding) is measured apart and
   added. Baseline, same run: the same stream through the meeting watcher's patrol
   (bursts of 2.5 s every 15 s), the ratio is duty/patrol cost.
2. **Clock-in latency.** Cadres sit down one after another (each for 14 s, then 8 s
   away: a sighting ends after the gap and the next arrival is decided again in full),
   at phases that fall anywhere on the sampling grid; latency = media time from the
   first frame showing the cadre to the `Seen` that starts their sighting.
3. **Closing a month** for the demo county's size (17 towns x 59 villages, 5 cadres
   each, a month of judged days: 22 working days, some late, absent, on leave) in a
   SQLite database: `close_period` makes the county's and each town's summary and XLSX.
   Baseline, same run: one `count(*)` over the month's days (the floor any summary pays).

No timing is asserted anywhere: each figure has its ratio to a baseline from the same run.

    python bench/duty.py             # ~2 minutes
    python bench/duty.py --quick     # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from faces import HEIGHT, WIDTH, Appearance, enrolment_photo, render_frame, sample_faces  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from db.database import Database  # noqa: E402
from db.duty.reports import close_period  # noqa: E402
from db.duty.rules import DayStatus  # noqa: E402
from db.models import DutyCadre, DutyDay, Gender, Member, OrgKind, OrgUnit  # noqa: E402
from recognition.duty import DUTY_SAMPLING, DutyPipeline, DutySettings  # noqa: E402
from recognition.gallery import Gallery, enrol_photo  # noqa: E402
from recognition.pipeline import FacePipeline, Seen  # noqa: E402
from recognition.watcher import CameraWatcher, SamplingSettings  # noqa: E402
from recognition.yunet_sface import YuNetSFace  # noqa: E402
from sfu.media.depacketize import Frame  # noqa: E402

FPS = 15
GOP = 15


def encode(appearances: list[Appearance], seconds: float, path: Path) -> list[Frame]:
    """The duty room as an IP camera sends it: Annex-B access units, also written to
    `path` as a raw H.264 stream (for the demuxer's cost)."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.framerate = FPS
    encoder.gop_size = GOP
    encoder.bit_rate = 400_000
    encoder.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline"}
    frames: list[Frame] = []
    for index in range(int(seconds * FPS)):
        picture = av.VideoFrame.from_ndarray(
            render_frame(appearances, index / FPS)[:, :, ::-1].copy(), format="rgb24"
        ).reformat(format="yuv420p")
        picture.pts = index
        for packet in encoder.encode(picture):
            frames.append(Frame(bytes(packet), index * 6000, 1, index / FPS, packet.is_keyframe))
    path.write_bytes(b"".join(frame.data for frame in frames))
    return frames


def gallery(engine: YuNetSFace, faces: dict, names: list[str]) -> Gallery:
    return Gallery(
        engine.model_id,
        {n: [enrol_photo(engine, enrolment_photo(faces[n])).embedding] for n in names},
    )


async def feed(watcher: CameraWatcher, frames: list[Frame], from_t: float) -> tuple[float, float]:
    """Push every frame; the process CPU and media seconds from `from_t` on."""
    cpu_start = None
    media = 0.0
    for frame in frames:
        if cpu_start is None and frame.arrival >= from_t:
            await watcher.drain()
            cpu_start = time.process_time()
            media = frames[-1].arrival - frame.arrival
        watcher.push_frame(frame, frame.arrival)
        await watcher.drain()
    return time.process_time() - (cpu_start or time.process_time()), media


def demux_cost(path: Path, repeat: int) -> float:
    """CPU seconds per media second to read the stream's packets (no decoding)."""
    start = time.process_time()
    media = 0.0
    for _ in range(repeat):
        with av.open(str(path), format="h264") as container:
            video = container.streams.video[0]
            for packet in container.demux(video):
                if packet.size:
                    bytes(packet)
                    media += 1 / FPS
    return (time.process_time() - start) / max(media, 1e-9)


async def per_core(engine: YuNetSFace, faces: dict, seconds: float, workdir: Path) -> dict:
    cadres = [
        Appearance(faces["tom"], 0.0, seconds + 1, 200, 180, 150),
        Appearance(faces["t1_1"], 0.0, seconds + 1, 450, 190, 140),
    ]
    path = workdir / "desk.mp4"
    frames = encode(cadres, seconds, path)
    names = ["tom", "t1_1", "astronaut", "t1_0", "t1_2"]
    with ThreadPoolExecutor(1) as pool:
        duty = CameraWatcher(
            DutyPipeline(engine, gallery(engine, faces, names)),
            pool,
            lambda *_: None,
            DUTY_SAMPLING,
            codec="h264",
        )
        duty_cpu, media = await feed(duty, frames, from_t=20.0)
        # the baseline: the meeting watcher's patrol on the same stream
        patrol_pipeline = FacePipeline(engine, gallery(engine, faces, names))
        patrol_pipeline.signed_in |= {"tom", "t1_1"}
        patrol = CameraWatcher(
            patrol_pipeline,
            pool,
            lambda *_: None,
            SamplingSettings(signin_window_s=0.0),
            codec="h264",
        )
        patrol_cpu, patrol_media = await feed(patrol, frames, from_t=20.0)
    ingest = demux_cost(path, repeat=3)
    per_media_s = duty_cpu / media + ingest
    return {
        "cameras_per_core": round(1 / per_media_s, 1),
        "duty_cpu_per_media_s": round(duty_cpu / media, 5),
        "rtsp_ingest_cpu_per_media_s": round(ingest, 5),
        "patrol_cpu_per_media_s": round(patrol_cpu / patrol_media, 5),
        "duty_over_patrol": round((duty_cpu / media) / (patrol_cpu / patrol_media), 3),
        "samples": duty.samples,
        "frames_decoded": duty.frames_decoded,
        "faces_embedded": duty.pipeline.faces_embedded,
    }


async def clock_in(engine: YuNetSFace, faces: dict, arrivals: int, workdir: Path) -> dict:
    rng = random.Random(7)
    people = ["tom", "astronaut", "t1_0", "t1_1", "t1_2", "t1_3", "t1_5"]
    appearances, starts = [], []
    t = 2.0
    for n in range(arrivals):
        t += rng.uniform(0, 3)  # any phase of the sampling grid
        who = people[n % len(people)]
        x = rng.choice((200, 320, 450))
        appearances.append(Appearance(faces[who], t, t + 14, x, 185, rng.randint(130, 160)))
        starts.append((who, t))
        t += 14 + 8
    frames = encode(appearances, t, workdir / "arrivals.mp4")
    seen: list[tuple[str, float]] = []

    def on_result(_, result) -> None:
        seen.extend((d.member, d.t) for d in result.decisions if isinstance(d, Seen) and d.first)

    with ThreadPoolExecutor(1) as pool:
        watcher = CameraWatcher(
            DutyPipeline(
                engine, gallery(engine, faces, people), duty=DutySettings(sighting_gap_s=6)
            ),
            pool,
            on_result,
            DUTY_SAMPLING,
            codec="h264",
        )
        await feed(watcher, frames, from_t=0.0)
    latencies, missed = [], 0
    for who, start in starts:
        found = [s for member, s in seen if member == who and start <= s < start + 14]
        if found:
            latencies.append(found[0] - start)
        else:
            missed += 1
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
    return {
        "arrivals": arrivals,
        "missed": missed,
        "clock_in_p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "clock_in_p95_s": round(p95, 2) if p95 is not None else None,
        "clock_in_max_s": round(latencies[-1], 2) if latencies else None,
    }


async def month_close(workdir: Path, towns: int, villages: int, cadres: int) -> dict:
    database = Database(f"sqlite:///{workdir}/duty.db")
    await database.migrate()
    rng = random.Random(3)
    month = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    due = [
        month[0] + dt.timedelta(days=n)
        for n in range(30)
        if (month[0] + dt.timedelta(days=n)).weekday() < 5
    ][:22]
    started = time.perf_counter()
    async with database.session() as session:
        county = OrgUnit(code="C", name="青山县", kind=OrgKind.COUNTY, path="", depth=0)
        session.add(county)
        await session.flush()
        county.path = f"/{county.id}/"
        village_units = []
        for t in range(towns):
            town = OrgUnit(
                code=f"T{t}",
                name=f"{t}镇",
                kind=OrgKind.TOWN,
                parent_id=county.id,
                path="",
                depth=1,
            )
            session.add(town)
            await session.flush()
            town.path = f"{county.path}{town.id}/"
            for v in range(villages):
                village = OrgUnit(
                    code=f"T{t}V{v}",
                    name=f"{t}镇{v}村",
                    kind=OrgKind.VILLAGE,
                    parent_id=town.id,
                    path="",
                    depth=2,
                )
                session.add(village)
                village_units.append(village)
            await session.flush()
            for village in village_units[-villages:]:
                village.path = f"{town.path}{village.id}/"
        await session.flush()
        members = []
        for village in village_units:
            for c in range(cadres):
                members.append(
                    {
                        "branch_id": village.id,
                        "org_path": village.path,
                        "name": f"干部{village.id}-{c}",
                        "gender": Gender.MALE,
                        "posts": [],
                    }
                )
        await session.execute(insert(Member), members)
        ids = (await session.execute(select(Member.id, Member.branch_id, Member.org_path))).all()
        await session.execute(
            insert(DutyCadre),
            [
                {"member_id": i, "village_id": v, "org_path": p, "post": "村委委员"}
                for i, v, p in ids
            ],
        )
        statuses = [DayStatus.ON_TIME] * 17 + [DayStatus.LATE, DayStatus.ABSENT, DayStatus.LEAVE]
        rows = []
        for member_id, village_id, path in ids:
            for date in due:
                status = rng.choice(statuses)
                rows.append(
                    {
                        "member_id": member_id,
                        "village_id": village_id,
                        "org_path": path,
                        "date": date,
                        "status": status,
                        "machine_status": status,
                        "late_min": rng.randint(1, 40) if status is DayStatus.LATE else 0,
                        "present_min": 0 if status in (DayStatus.ABSENT, DayStatus.LEAVE) else 480,
                        "gaps": [],
                        "corrected": False,
                    }
                )
        for chunk in range(0, len(rows), 20_000):
            await session.execute(insert(DutyDay), rows[chunk : chunk + 20_000])
        await session.commit()
    seeded_s = time.perf_counter() - started
    async with database.session() as session:
        started = time.perf_counter()
        counted = await session.scalar(
            select(func.count()).select_from(DutyDay).where(DutyDay.date.between(*month))
        )
        scan_s = time.perf_counter() - started
        started = time.perf_counter()
        reports = await close_period(session, "month", *month)
        await session.commit()
        close_s = time.perf_counter() - started
    await database.close()
    return {
        "villages": towns * villages,
        "cadres": len(ids),
        "days": counted,
        "reports": len(reports),
        "seed_s": round(seeded_s, 2),
        "month_close_s": round(close_s, 3),
        "count_scan_s": round(scan_s, 4),
        "close_over_scan": round(close_s / max(scan_s, 1e-9), 1),
    }


async def run(args: argparse.Namespace) -> dict:
    engine = YuNetSFace()
    faces = sample_faces()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        cost = await per_core(engine, faces, 50 if args.quick else 120, workdir)
        print(f"duty cameras per core: {cost}", flush=True)
        latency = await clock_in(engine, faces, 6 if args.quick else 20, workdir)
        print(f"clock-in: {latency}", flush=True)
        close = await month_close(workdir, 17, 59, 5)
        print(f"month close: {close}", flush=True)
    return {
        "bench": "duty",
        "quick": args.quick,
        "cameras_per_core": cost["cameras_per_core"],
        "clock_in_p95_s": latency["clock_in_p95_s"],
        "month_close_s": close["month_close_s"],
        "cost": cost,
        "clock_in": latency,
        "month_close": close,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (under a minute)")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
