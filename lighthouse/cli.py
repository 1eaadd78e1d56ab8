"""The `lighthouse` console command."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from .config import Config, ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lighthouse", description="Lighthouse meeting server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML config file (also LIGHTHOUSE_CONFIG)")
    serve.add_argument("--host", help="listen address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--demo", action="store_true", help="add the demo room and print its links")
    token = commands.add_parser("token", help="mint a participant token with the configured secret")
    token.add_argument("--config", help="TOML config file (also LIGHTHOUSE_CONFIG)")
    token.add_argument("--room", required=True)
    token.add_argument("--role", required=True, choices=["main", "terminal", "viewer"])
    token.add_argument("--participant", required=True, help="stable id, e.g. tv-hongxing")
    token.add_argument("--name", help="display name, e.g. 红星村党支部")
    token.add_argument("--ttl-hours", type=float, default=12.0)
    args = parser.parse_args(argv)

    overrides: dict[str, object] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "demo", False):
        overrides["demo"] = True
    try:
        config = load_config(args.config, **overrides)
    except ConfigError as exc:
        print(f"lighthouse: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        return mint_token(config, args)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return serve_forever(config)


def mint_token(config: Config, args: argparse.Namespace) -> int:
    from signaling.tokens import TokenIssuer

    if not config.secret_configured:
        print(
            "lighthouse: set the secret (LIGHTHOUSE_SECRET or [server] secret) first: "
            "a token signed with a random secret admits nobody",
            file=sys.stderr,
        )
        return 2
    issuer = TokenIssuer(config.secret)
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


def serve_forever(config: Config) -> int:
    from signaling.tokens import TokenIssuer

    from .app import create_app
    from .demo import demo_links

    app = create_app(config)

    def announce(_: str) -> None:
        # run_app calls this once the socket is bound, so the links printed already work
        if config.demo:
            print("Lighthouse demo meeting — open these links:", flush=True)
            for link in demo_links(config.base_url(), TokenIssuer(config.secret)):
                print(f"  {link.label}: {link.url}", flush=True)
        print(f"Lighthouse listening on {config.base_url()}", flush=True)

    web.run_app(app, host=config.host, port=config.port, print=announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
