"""The `lighthouse` console command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from .access_log import PathOnlyAccessLogger
from .config import (
    Config,
    ConfigError,
    generated_secret_warning,
    keep_secret,
    load_config,
    parse_workers,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lighthouse", description="Lighthouse meeting server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML config file (also LIGHTHOUSE_CONFIG)")
    serve.add_argument("--host", help="listen address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--demo", action="store_true", help="add the demo room and print its links")
    serve.add_argument(
        "--workers",
        help="media worker processes beside the front: a number or auto (one per core); "
        "needs Redis (LIGHTHOUSE_REDIS_URL)",
    )
    token = commands.add_parser("token", help="mint a participant token with the configured secret")
    token.add_argument("--config", help="TOML config file (also LIGHTHOUSE_CONFIG)")
    token.add_argument("--room", required=True)
    token.add_argument("--role", required=True, choices=["main", "terminal", "viewer"])
    token.add_argument("--participant", required=True, help="stable id, e.g. tv-hongxing")
    token.add_argument("--name", help="display name, e.g. 红星村党支部")
    token.add_argument("--ttl-hours", type=float, default=12.0)
    add_demo_data_parser(commands)
    args = parser.parse_args(argv)

    # Any, not object: mypy would otherwise match these keywords against load_config's `env`
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "demo", False):
        overrides["demo"] = True
    try:
        if getattr(args, "workers", None) is not None:
            overrides["workers"] = parse_workers(args.workers)
    except ConfigError as exc:
        print(f"lighthouse: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    try:
        config = load_config(args.config, **overrides)
    except ConfigError as exc:
        print(f"lighthouse: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo-data":
        return load_demo_data(config, args)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config, note = keep_secret(config)
    except ConfigError as exc:
        print(f"lighthouse: {exc}", file=sys.stderr)
        return 2
    for warning in (note, generated_secret_warning(config)):
        if warning:
            logging.getLogger("lighthouse").warning("%s", warning)
    if args.command == "token":
        return mint_token(config, args)
    return serve_forever(config)


def mint_token(config: Config, args: argparse.Namespace) -> int:
    from signaling.tokens import TokenIssuer

    issuer = TokenIssuer(config.secret)  # the configured one, or the one the server keeps
    print(
        issuer.mint(
            args.participant,
            args.name or args.participant,
            args.room,
            args.role,
            ttl_s=int(args.ttl_hours * 3600),
        )
    )
    return 0


def add_demo_data_parser(commands: argparse._SubParsersAction) -> None:
    from db.demo_data import (
        DEFAULT_MEMBERS,
        DEFAULT_SEED,
        DEFAULT_TOWNS,
        DEFAULT_VILLAGES_PER_TOWN,
    )
    from db.duty.demo import HISTORY_DAYS

    demo = commands.add_parser(
        "demo-data",
        help="load the demo county into an empty database",
        description="Migrate the database, load the demo county (org tree, members, paired "
        "TVs, accounts admin and town01...) and print its counts as one JSON line.",
    )
    demo.add_argument("--config", help="TOML config file (also LIGHTHOUSE_CONFIG)")
    demo.add_argument("--database-url", help="default: the configured database")
    demo.add_argument("--members", type=int, default=DEFAULT_MEMBERS)
    demo.add_argument("--towns", type=int, default=DEFAULT_TOWNS)
    demo.add_argument(
        "--villages-per-town",
        type=int,
        help=f"default: ~30 members a village, at most {DEFAULT_VILLAGES_PER_TOWN}",
    )
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED)
    demo.add_argument(
        "--duty-days",
        type=int,
        default=HISTORY_DAYS,
        help="days of duty attendance history up to yesterday (0: no rosters or history)",
    )
    demo.add_argument(
        "--admin-password", help="password of admin and the town admins (default: random, shown)"
    )


def load_demo_data(config: Config, args: argparse.Namespace) -> int:
    """`lighthouse demo-data`: stdout gets only the JSON line, so scripts can read it."""
    from db.database import Database
    from db.demo_data import DemoDataError, create_demo_county, villages_per_town_for

    from .demo import make_password

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    password = args.admin_password or make_password()

    async def run() -> dict[str, int]:
        database = Database(config.database_url)
        try:
            await database.migrate()
            return await create_demo_county(
                database,
                admin_password=password,
                towns=args.towns,
                villages_per_town=args.villages_per_town
                or villages_per_town_for(args.members, args.towns),
                members=args.members,
                seed=args.seed,
                progress=progress,
                duty_zone=ZoneInfo(config.county_timezone),
                duty_days=args.duty_days,
            )
        finally:
            await database.close()

    _ensure_sqlite_dir(config.database_url)
    try:
        counts = asyncio.run(run())
    except DemoDataError as exc:
        print(f"lighthouse: {exc}", file=sys.stderr)
        return 2
    if not args.admin_password:
        progress(f"console accounts admin and town01...: password {password}")
    print(json.dumps(counts), flush=True)
    return 0


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def serve_forever(config: Config) -> int:
    from db.demo_data import DemoDataError
    from recognition.onnx_models import ModelError
    from signaling.tokens import TokenIssuer

    from .app import create_app
    from .demo import console_line, demo_links, demo_members, prepare_demo_county

    county = None
    if config.demo:
        # before the socket is bound: the console works as soon as the links are printed
        try:
            county = prepare_demo_county(
                config.database_url,
                members=demo_members(os.environ),
                time_zone=config.county_timezone,
                progress=lambda message: print(message, file=sys.stderr, flush=True),
            )
        except DemoDataError as exc:
            print(f"lighthouse: {exc}", file=sys.stderr)
            return 2
    if config.workers:
        from sfu.cluster import ClusterState, RedisUnavailable

        cores = os.cpu_count() or 1
        if config.workers > cores:
            print(
                f"lighthouse: warning: {config.workers} media workers on {cores} cores: "
                "they will compete for the CPU",
                file=sys.stderr,
            )
        try:
            asyncio.run(_check_redis(ClusterState(config.redis_url)))
        except RedisUnavailable as exc:
            print(
                f"lighthouse: --workers needs Redis for the workers' shared state: {exc} "
                "(start Redis or set LIGHTHOUSE_REDIS_URL)",
                file=sys.stderr,
            )
            return 2
    app = create_app(config)

    def announce(_: str) -> None:
        # run_app calls this once the socket is bound, so the links printed already work
        if config.demo:
            print("Lighthouse demo meeting — open these links:", flush=True)
            for link in demo_links(config.base_url(), TokenIssuer(config.secret)):
                print(f"  {link.label}: {link.url}", flush=True)
        if county is not None:
            print(console_line(config.base_url(), county), flush=True)
        print(f"Lighthouse listening on {config.base_url()}", flush=True)

    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            print=announce,
            access_log_class=PathOnlyAccessLogger,
        )
    except ModelError as exc:  # raised at start-up, before the socket serves anyone
        print(f"lighthouse: cannot load the face models: {exc}", file=sys.stderr)
        return 2
    return 0


async def _check_redis(state) -> None:
    try:
        await state.check()
    finally:
        await state.close()


if __name__ == "__main__":
    sys.exit(main())
