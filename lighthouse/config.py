"""Configuration: defaults, then a TOML file, then LIGHTHOUSE_* environment variables."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sfu.negotiation import SUPPORTED_VIDEO_CODECS, IceServer
from sfu.ports import PortRange
from signaling.notifications import Webhook

from .proxies import parse_networks


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RoomConfig:
    id: str
    name: str
    video_codec: str = "h264"
    max_video_kbps: int = 1000
    # the organising org unit (its code); callers in its subtree or above it may join
    org_code: str | None = None
    # room policy: record its venues (when recording is enabled at all)
    record: bool = True
    # run by its main venue: villages see the main venue, content and the floor only
    controlled: bool = False


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8080
    # Base URL printed in links (what a TV on the county network should open).
    public_url: str | None = None
    # HS256 secret for participant tokens; generated per start when not configured.
    secret: str = ""
    # older secrets still accepted when verifying, while a rotation is under way: tokens
    # are signed with `secret` only, and a TV holding an old token is handed a new one
    previous_secrets: tuple[str, ...] = ()
    ice_servers: tuple[IceServer, ...] = ()
    # coturn's use-auth-secret: a joined client is given TURN credentials minted for it
    # (signaling/turn.py), valid turn_ttl_s; the same secret is coturn's static-auth-secret
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = 4 * 3600
    rooms: tuple[RoomConfig, ...] = ()
    demo: bool = False
    idle_timeout_s: float = 30.0
    # WebSockets (signaling and the TVs' lobby, each) per client address and in all: a
    # carrier's NAT can put many villages behind one address
    max_sockets_per_address: int = 200
    max_sockets: int = 5000
    # publications and subscriptions on the whole server
    max_peer_connections: int = 5000
    # a peer's ICE candidates the server checks, per media section (sfu/candidates.py);
    # loopback ones only when allowed (tests in a loopback-only network namespace)
    max_remote_candidates: int = 10
    allow_loopback_candidates: bool = False
    # the UDP ports media is bound in ("40000-40999"), for a firewall rule; empty:
    # ephemeral ports, as the operating system gives them
    udp_ports: str = ""
    # the address media is reached at when it is not one of the host's own (a container
    # with its udp_ports published, behind a 1:1 NAT): the one host candidate, per port
    announced_address: str = ""
    # reverse proxies whose X-Forwarded-For / -Proto are believed (lighthouse/proxies.py)
    trusted_proxies: tuple[str, ...] = ()
    log_level: str = "INFO"
    # media worker processes beside the front (0: one process, no Redis needed)
    workers: int = 0
    # the most participants one media worker takes (0: no limit); a full one is skipped
    worker_max_peers: int = 0
    # the shared state of the media workers (required with workers)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # SQLite by default (embedded); postgresql://user@host/db in production
    database_url: str = "sqlite:///var/lighthouse.db"
    # recordings: where segments go, how long each is, and the limits that protect the disk
    recording_enabled: bool = True
    recording_dir: str = "var/recordings"
    recording_segment_s: float = 10.0
    recording_quota_bytes: int = 50 * 1024**3
    recording_min_free_bytes: int = 2 * 1024**3
    recording_retention_days: int = 180
    # rooms opened for meetings started from the phone or console ([meetings])
    meeting_video_codec: str = "h264"
    meeting_max_video_kbps: int = 1000
    meeting_record: bool = True
    # face sign-in from village cameras ([recognition], docs/recognition.md)
    recognition_enabled: bool = True
    evidence_dir: str = "var/evidence"
    # empty: the bundled YuNet + SFace; a directory: an insightface pack the operator
    # installed there (SCRFD + ArcFace, non-commercial licence: docs/recognition.md)
    face_models_dir: str = ""
    # onnxruntime execution providers, in order (a GPU host: CUDA first, CPU after)
    face_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    # > 0: the faces of concurrent cameras are embedded together, up to this many (GPU)
    batch_across_streams: int = 0
    recognition_workers: int = 2
    signin_window_s: float = 900.0
    signin_fps: float = 2.0
    burst_every_s: float = 15.0
    snapshot_every_s: float = 300.0
    match_threshold: float = 0.40
    match_margin: float = 0.10
    liveness: bool = True
    liveness_min_residual: float = 0.018
    neighbour_levels: int = 0
    evidence_retention_days: int = 365  # 0 keeps face and scene pictures for ever
    # duty attendance (无感考勤): the county's time zone judges every duty day
    county_timezone: str = "Asia/Shanghai"
    duty_enabled: bool = True
    duty_tick_s: float = 30.0
    # webhooks told of duty alerts and reports ([[webhooks]]: name, url, secret, events)
    webhooks: tuple[Webhook, ...] = ()
    # False when no secret was configured: `keep_secret` then generates one at the first
    # start and keeps it in `secret_file` (a per-start secret would log everybody out and
    # send every TV back to pairing at each restart)
    secret_configured: bool = True
    secret_file: str | None = None

    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def _room(entry: dict) -> RoomConfig:
    try:
        room = RoomConfig(
            id=str(entry["id"]),
            name=str(entry.get("name", entry["id"])),
            video_codec=str(entry.get("video_codec", "h264")).lower(),
            max_video_kbps=int(entry.get("max_video_kbps", 1000)),
            org_code=str(entry["org_code"]) if entry.get("org_code") else None,
            record=entry.get("record", True),
            controlled=entry.get("controlled", False),
        )
    except KeyError as exc:
        raise ConfigError(f"a [[rooms]] entry lacks {exc.args[0]!r}") from None
    if not isinstance(room.record, bool):
        raise ConfigError(f"room {room.id}: record must be true or false")
    if not isinstance(room.controlled, bool):
        raise ConfigError(f"room {room.id}: controlled must be true or false")
    if not 100 <= room.max_video_kbps <= 20000:
        raise ConfigError(f"room {room.id}: max_video_kbps must be between 100 and 20000")
    if room.video_codec not in SUPPORTED_VIDEO_CODECS:
        raise ConfigError(
            f"room {room.id}: video_codec must be one of "
            f"{', '.join(SUPPORTED_VIDEO_CODECS)}, not {room.video_codec!r}"
        )
    return room


def _ice_servers(entries: list) -> tuple[IceServer, ...]:
    servers = []
    for entry in entries:
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ConfigError("every ICE server needs urls")
        servers.append(
            IceServer(
                urls=list(urls), username=entry.get("username"), credential=entry.get("credential")
            )
        )
    return tuple(servers)


def _duty(section: dict) -> dict:
    values = _table(
        "duty",
        section,
        {
            "enabled": ("duty_enabled", bool),
            "timezone": ("county_timezone", str),
            "tick_s": ("duty_tick_s", float),
        },
    )
    if "county_timezone" in values:
        _zone(values["county_timezone"])
    if not 1.0 <= values.get("duty_tick_s", 30.0) <= 300.0:
        raise ConfigError("[duty] tick_s must be between 1 and 300")
    return values


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"[duty] timezone: no such time zone {name!r}") from exc


def _webhooks(entries: object) -> tuple[Webhook, ...]:
    if not isinstance(entries, list):
        raise ConfigError("[[webhooks]] must be a list of tables")
    hooks = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError("each [[webhooks]] entry is a table")
        name, url, secret = entry.get("name"), entry.get("url"), entry.get("secret")
        if not (isinstance(name, str) and name and len(name) <= 64):
            raise ConfigError("every webhook needs a name (at most 64 characters)")
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ConfigError(f"webhook {name}: url must be an http:// or https:// URL")
        if not (isinstance(secret, str) and len(secret.encode()) >= 16):
            raise ConfigError(f"webhook {name}: secret must be at least 16 bytes")
        events = entry.get("events", [])
        if not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
            raise ConfigError(f"webhook {name}: events must be a list of event names")
        hooks.append(Webhook(name, url, secret, tuple(events)))
    if len({h.name for h in hooks}) != len(hooks):
        raise ConfigError("webhook names must be unique")
    return tuple(hooks)


def _secrets(value: object) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment's comma-separated form
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("[server] previous_secrets must be a list of strings")
    if any(len(v.encode()) < 32 for v in value):
        raise ConfigError("[server] previous_secrets: each secret is at least 32 bytes")
    return tuple(value)


def _proxies(value: object) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment's comma-separated form
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ConfigError("[server] trusted_proxies must be a list of addresses or networks")
    try:
        return tuple(str(n) for n in parse_networks(value))
    except ValueError as exc:
        raise ConfigError(f"[server] trusted_proxies: {exc}") from None


def _turn(section: dict) -> dict[str, Any]:
    urls = section.get("urls", [])
    if isinstance(urls, str):  # the environment's comma-separated form
        urls = [u.strip() for u in urls.split(",") if u.strip()]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ConfigError("[turn] urls must be a list of turn: or turns: URLs")
    for url in urls:
        if not url.startswith(("turn:", "turns:")):
            raise ConfigError(f"[turn] urls: {url!r} is not a turn: or turns: URL")
    return {
        "turn_urls": tuple(urls),
        "turn_secret": str(section.get("secret", "")),
        "turn_ttl_s": int(section.get("ttl_s", 4 * 3600)),
    }


def _flag(section: dict, key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"[server] {key} must be true or false")
    return value


def _table(name: str, section: dict, names: dict[str, tuple[str, type]]) -> dict:
    """A TOML table's settings as Config fields: unknown keys and non-boolean flags refused."""
    values = {}
    for key, value in section.items():
        if key not in names:
            raise ConfigError(f"unknown [{name}] setting {key!r}")
        field, kind = names[key]
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(f"[{name}] {key} must be true or false")
        values[field] = kind(value)
    return values


def _recording(section: dict) -> dict:
    values = _table(
        "recording",
        section,
        {
            "enabled": ("recording_enabled", bool),
            "dir": ("recording_dir", str),
            "segment_s": ("recording_segment_s", float),
            "quota_bytes": ("recording_quota_bytes", int),
            "min_free_bytes": ("recording_min_free_bytes", int),
            "retention_days": ("recording_retention_days", int),
        },
    )
    if values.get("recording_segment_s", 10.0) < 1:
        raise ConfigError("[recording] segment_s must be at least 1")
    return values


def _recognition(section: dict) -> dict:
    section = dict(section)
    if "liveness_min_change" in section:  # the landmark-crop measure's key, another scale
        raise ConfigError(
            "[recognition] liveness_min_change is gone: the liveness check now measures "
            "liveness_min_residual (default 0.018, docs/recognition.md); remove the old key"
        )
    providers = section.pop("providers", None)
    values = _table(
        "recognition",
        section,
        {
            "enabled": ("recognition_enabled", bool),
            "evidence_dir": ("evidence_dir", str),
            "models_dir": ("face_models_dir", str),
            "workers": ("recognition_workers", int),
            "signin_window_s": ("signin_window_s", float),
            "signin_fps": ("signin_fps", float),
            "burst_every_s": ("burst_every_s", float),
            "snapshot_every_s": ("snapshot_every_s", float),
            "match_threshold": ("match_threshold", float),
            "margin": ("match_margin", float),
            "liveness": ("liveness", bool),
            "liveness_min_residual": ("liveness_min_residual", float),
            "neighbour_levels": ("neighbour_levels", int),
            "batch_across_streams": ("batch_across_streams", int),
            "evidence_retention_days": ("evidence_retention_days", int),
        },
    )
    if providers is not None:
        if not (
            isinstance(providers, list)
            and providers
            and all(isinstance(p, str) and p for p in providers)
        ):
            raise ConfigError("[recognition] providers must be a list of onnxruntime providers")
        values["face_providers"] = tuple(providers)
    limits = {
        "recognition_workers": (1, 64),
        "signin_fps": (0.2, 10.0),
        "burst_every_s": (5.0, 3600.0),
        "snapshot_every_s": (10.0, 86400.0),
        "match_threshold": (0.0, 1.0),
        "match_margin": (0.0, 1.0),
        "liveness_min_residual": (0.0, 1.0),
        "neighbour_levels": (0, 3),
        "batch_across_streams": (0, 1024),
        "evidence_retention_days": (0, 36500),
    }
    for key, (low, high) in limits.items():
        if key in values and not low <= values[key] <= high:
            name = key.removeprefix("recognition_").replace("match_margin", "margin")
            raise ConfigError(f"[recognition] {name} must be between {low} and {high}")
    return values


def _meetings(section: dict) -> dict:
    values = _table(
        "meetings",
        section,
        {
            "video_codec": ("meeting_video_codec", str),
            "max_video_kbps": ("meeting_max_video_kbps", int),
            "record": ("meeting_record", bool),
        },
    )
    codec = values.get("meeting_video_codec", "h264").lower()
    if codec not in SUPPORTED_VIDEO_CODECS:
        raise ConfigError(
            f"[meetings] video_codec must be one of {', '.join(SUPPORTED_VIDEO_CODECS)}"
        )
    values["meeting_video_codec"] = codec
    return values


def parse_workers(value: object) -> int:
    """`--workers` / [server] workers: a count, or "auto" for one per core."""
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError(f"workers must be a number or auto, not {value!r}") from None
    if not 0 <= count <= 256:
        raise ConfigError("workers must be between 0 and 256")
    return count


def load_config(
    path: str | Path | None = None, env: dict[str, str] | None = None, **overrides: object
) -> Config:
    """Build the Config. Precedence: overrides > environment > TOML file > defaults."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("LIGHTHOUSE_CONFIG")
    data: dict = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    server = data.get("server", {})
    values: dict = {
        "host": server.get("host", "0.0.0.0"),
        "port": int(server.get("port", 8080)),
        "public_url": server.get("public_url"),
        "secret": server.get("secret", ""),
        "previous_secrets": _secrets(server.get("previous_secrets", [])),
        "idle_timeout_s": float(server.get("idle_timeout_s", 30.0)),
        "max_sockets_per_address": int(server.get("max_sockets_per_address", 200)),
        "max_sockets": int(server.get("max_sockets", 5000)),
        "max_peer_connections": int(server.get("max_peer_connections", 5000)),
        "max_remote_candidates": int(server.get("max_remote_candidates", 10)),
        "allow_loopback_candidates": _flag(server, "allow_loopback_candidates", False),
        "udp_ports": str(server.get("udp_ports", "")),
        "announced_address": str(server.get("announced_address", "")),
        "trusted_proxies": _proxies(server.get("trusted_proxies", [])),
        "log_level": server.get("log_level", "INFO"),
        "workers": parse_workers(server.get("workers", 0)),
        "worker_max_peers": int(server.get("worker_max_peers", 0)),
        "redis_url": data.get("redis", {}).get("url", "redis://127.0.0.1:6379/0"),
        "database_url": data.get("database", {}).get("url", "sqlite:///var/lighthouse.db"),
        **_recording(data.get("recording", {})),
        **_meetings(data.get("meetings", {})),
        **_recognition(data.get("recognition", {})),
        "ice_servers": _ice_servers(data.get("ice_servers", [])),
        **_duty(data.get("duty", {})),
        "webhooks": _webhooks(data.get("webhooks", [])),
        **_turn(data.get("turn", {})),
        "rooms": tuple(_room(r) for r in data.get("rooms", [])),
    }
    env_map = {
        "LIGHTHOUSE_HOST": "host",
        "LIGHTHOUSE_PORT": "port",
        "LIGHTHOUSE_PUBLIC_URL": "public_url",
        "LIGHTHOUSE_SECRET": "secret",
        "LIGHTHOUSE_LOG_LEVEL": "log_level",
        "LIGHTHOUSE_DATABASE_URL": "database_url",
        "LIGHTHOUSE_RECORDING_DIR": "recording_dir",
        "LIGHTHOUSE_EVIDENCE_DIR": "evidence_dir",
        "LIGHTHOUSE_FACE_MODELS_DIR": "face_models_dir",
        "LIGHTHOUSE_REDIS_URL": "redis_url",
    }
    for var, key in env_map.items():
        if env.get(var):
            values[key] = int(env[var]) if key == "port" else env[var]
    if env.get("LIGHTHOUSE_WORKERS"):
        values["workers"] = parse_workers(env["LIGHTHOUSE_WORKERS"])
    if env.get("LIGHTHOUSE_PREVIOUS_SECRETS"):
        values["previous_secrets"] = _secrets(env["LIGHTHOUSE_PREVIOUS_SECRETS"])
    if env.get("LIGHTHOUSE_TRUSTED_PROXIES"):
        values["trusted_proxies"] = _proxies(env["LIGHTHOUSE_TRUSTED_PROXIES"])
    if env.get("LIGHTHOUSE_UDP_PORTS"):
        values["udp_ports"] = env["LIGHTHOUSE_UDP_PORTS"]
    if env.get("LIGHTHOUSE_ANNOUNCED_ADDRESS"):
        values["announced_address"] = env["LIGHTHOUSE_ANNOUNCED_ADDRESS"]
    if env.get("LIGHTHOUSE_TURN_URLS"):
        values["turn_urls"] = _turn({"urls": env["LIGHTHOUSE_TURN_URLS"]})["turn_urls"]
    if env.get("LIGHTHOUSE_TURN_SECRET"):
        values["turn_secret"] = env["LIGHTHOUSE_TURN_SECRET"]
    if env.get("LIGHTHOUSE_ICE_SERVERS"):
        try:
            values["ice_servers"] = _ice_servers(json.loads(env["LIGHTHOUSE_ICE_SERVERS"]))
        except ValueError as exc:
            raise ConfigError(f"LIGHTHOUSE_ICE_SERVERS is not a JSON list: {exc}") from exc
    values.update(overrides)
    config = Config(**values)
    if not 1 <= config.max_remote_candidates <= 100:
        raise ConfigError("[server] max_remote_candidates must be between 1 and 100")
    if config.udp_ports:
        try:
            ports = PortRange.parse(config.udp_ports)
        except ValueError as exc:
            raise ConfigError(f"[server] udp_ports: {exc}") from None
        if len(ports) < 2 * max(config.workers, 1):
            raise ConfigError(
                f"[server] udp_ports {ports} is too small for {config.workers} workers"
            )
    if config.announced_address:
        try:
            announced = ipaddress.ip_address(config.announced_address)
        except ValueError:
            raise ConfigError(
                f"[server] announced_address {config.announced_address!r} is not an IP address"
            ) from None
        if announced.version != 4 or announced.is_unspecified:
            raise ConfigError("[server] announced_address must be one IPv4 address")
        if not config.udp_ports:
            raise ConfigError(
                "[server] announced_address needs udp_ports: the ports published with it"
            )
    if bool(config.turn_urls) != bool(config.turn_secret):
        raise ConfigError("[turn] needs both urls and secret (coturn's static-auth-secret)")
    if config.turn_secret and len(config.turn_secret.encode()) < 16:
        raise ConfigError("[turn] secret must be at least 16 bytes")
    if not 60 <= config.turn_ttl_s <= 7 * 86400:
        raise ConfigError("[turn] ttl_s must be between 60 and 604800 seconds")
    if not config.secret:
        config = replace(config, secret=secrets.token_urlsafe(48), secret_configured=False)
    elif len(config.secret.encode()) < 32:
        raise ConfigError("the secret must be at least 32 bytes")
    return config


def generated_secret_warning(config: Config) -> str | None:
    """What to tell an operator who runs production settings on a generated secret."""
    if config.secret_configured:
        return None
    signs = []
    if config.public_url:
        signs.append(f"public_url {config.public_url}")
    if not config.database_url.startswith("sqlite"):
        signs.append("a database server")
    if config.workers:
        signs.append(f"{config.workers} media workers")
    if not signs:
        return None
    return (
        f"this looks like production ({', '.join(signs)}) but runs on a generated secret "
        f"kept in {config.secret_file}: anyone who reads that file can sign in as anybody; "
        "set LIGHTHOUSE_SECRET (or [server] secret) from your secret store"
    )


def default_secret_file(database_url: str) -> Path:
    """Beside the SQLite file (like the demo password), else var/lighthouse.secret."""
    if database_url.startswith("sqlite:///"):
        database = Path(database_url.removeprefix("sqlite:///"))
        return database.with_name(database.name + ".secret")
    return Path("var") / "lighthouse.secret"


def keep_secret(config: Config) -> tuple[Config, str | None]:
    """With no secret configured: the one kept from the first start, or a new one written
    there (mode 0600). Returns the config and what to tell the operator, if anything."""
    if config.secret_configured:
        return config, None
    path = default_secret_file(config.database_url)
    if config.secret_file:
        path = Path(config.secret_file)
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the kept secret {path}: {exc}") from exc
    if len(kept.encode()) >= 32:
        return replace(config, secret=kept, secret_file=str(path)), None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(config.secret + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot keep the generated secret in {path}: {exc}") from exc
    return replace(config, secret_file=str(path)), (
        f"no secret configured: generated one and kept it in {path} (mode 0600); "
        "set LIGHTHOUSE_SECRET or [server] secret for production"
    )
