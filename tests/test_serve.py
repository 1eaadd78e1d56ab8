"""`lighthouse serve --demo` (what `make run` starts) prints working links."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import aiohttp

from signaling.client import SignalingClient

from conftest import free_port


async def test_demo_server_prints_links_that_work(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "LIGHTHOUSE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LIGHTHOUSE_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lighthouse.cli",
        "serve",
        "--demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        lines: list[str] = []
        while not any("listening on" in line for line in lines):
            line = await asyncio.wait_for(process.stdout.readline(), 120)
            assert line, "the server exited: " + "".join(lines)
            lines.append(line.decode())
        links = dict(re.findall(r"^\s+(.+?): (http://\S+)$", "".join(lines), re.MULTILINE))
        assert len(links) == 3, lines
        async with aiohttp.ClientSession() as session:
            for _label, url in links.items():
                async with session.get(url) as response:
                    assert response.status == 200
                    assert "zh" in (await response.text())[:200]
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert (await response.json())["status"] == "ok"
        # the access log names the pages opened, never their tokens
        logged: list[str] = []
        while not any("GET /healthz" in line for line in logged):
            line = await asyncio.wait_for(process.stdout.readline(), 10)
            assert line, "the server exited: " + "".join(lines + logged)
            logged.append(line.decode())
        assert any("GET /tv" in line for line in logged), logged
        assert not [line for line in logged if "token=" in line], logged
        # the printed tokens really admit to the demo room
        token = next(u for label, u in links.items() if "village" in label).split("token=")[1]
        client = SignalingClient(f"http://127.0.0.1:{port}", token)
        joined = await client.connect()
        assert joined["room"]["id"] == "demo" and joined["role"] == "terminal"
        assert joined["room"]["video_codec"] == "h264"
        await client.close()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


def test_bad_config_is_a_clear_error(tmp_path):
    import subprocess

    config = tmp_path / "bad.toml"
    config.write_text('[[rooms]]\nid = "x"\nvideo_codec = "vp9"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "lighthouse.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "video_codec must be one of h264, vp8" in result.stderr


def test_a_models_dir_that_is_not_a_pack_stops_the_start_with_what_it_holds(tmp_path):
    import subprocess

    (tmp_path / "notes.onnx").write_bytes(b"not a model")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTHOUSE_")}
    env.update(
        LIGHTHOUSE_FACE_MODELS_DIR=str(tmp_path),
        LIGHTHOUSE_DATABASE_URL=f"sqlite:///{tmp_path}/lh.db",
        LIGHTHOUSE_EVIDENCE_DIR=str(tmp_path / "evidence"),
        LIGHTHOUSE_RECORDING_DIR=str(tmp_path / "recordings"),
        LIGHTHOUSE_PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "lighthouse.cli", "serve"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "cannot load the face models: notes.onnx is not a loadable ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_command_signs_with_the_kept_secret_and_mints_a_valid_token(tmp_path):
    """With no secret configured, the first start generates one and keeps it beside the
    database (0600): the next start, and the token command, use the same one (a secret
    per start logged everybody out and sent every TV back to pairing at each restart)."""
    import stat
    import subprocess

    from signaling.tokens import TokenIssuer

    from conftest import TEST_SECRET

    base = [
        sys.executable,
        "-m",
        "lighthouse.cli",
        "token",
        "--room",
        "demo",
        "--role",
        "terminal",
        "--participant",
        "tv-7",
        "--name",
        "红星村",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTHOUSE_")}
    env["LIGHTHOUSE_DATABASE_URL"] = f"sqlite:///{tmp_path}/lighthouse.db"
    first = subprocess.run(base, capture_output=True, text=True, timeout=30, env=env)
    assert first.returncode == 0, first.stderr
    kept_file = tmp_path / "lighthouse.db.secret"
    assert f"kept it in {kept_file}" in first.stderr
    assert stat.S_IMODE(kept_file.stat().st_mode) == 0o600
    kept = kept_file.read_text().strip()
    assert TokenIssuer(kept).verify(first.stdout.strip()).participant_id == "tv-7"
    again = subprocess.run(base, capture_output=True, text=True, timeout=30, env=env)
    assert again.returncode == 0 and "generated" not in again.stderr
    assert TokenIssuer(kept).verify(again.stdout.strip()).room_id == "demo"
    assert kept_file.read_text().strip() == kept  # not replaced
    minted = subprocess.run(
        base,
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "LIGHTHOUSE_SECRET": TEST_SECRET},
    )
    assert minted.returncode == 0, minted.stderr
    grant = TokenIssuer(TEST_SECRET).verify(minted.stdout.strip())
    assert (grant.participant_id, grant.name, grant.room_id, grant.role) == (
        "tv-7",
        "红星村",
        "demo",
        "terminal",
    )
