"""TURN credentials: minted per joined client for coturn's use-auth-secret mode, checked by
a real coturn; no page carries ICE servers or credentials, static ones included."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import socket
import time

import aiohttp
import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint

from sfu.negotiation import IceServer
from signaling.turn import TurnRestCredentials

from conftest import free_port

TURN_SECRET = "turn-shared-secret-" + "x" * 20
TURN_PORT = free_port()
# TURN over TLS where firewalls let only HTTPS out: on 443 as a county runs it (binding it
# needs root, as CI has; elsewhere a free port stands in, the same TLS either way)
TURN_TLS_PORT = 443 if os.geteuid() == 0 else free_port()
TURN_TLS_NAME = "turn.lighthouse.test"  # the browser maps it to 127.0.0.1
STATIC_PASSWORD = "static-password-never-in-a-page"

pytestmark = pytest.mark.server_config(
    turn_urls=(
        f"turn:127.0.0.1:{TURN_PORT}?transport=udp",
        f"turn:127.0.0.1:{TURN_PORT}?transport=tcp",
        f"turns:{TURN_TLS_NAME}:{TURN_TLS_PORT}?transport=tcp",
    ),
    turn_secret=TURN_SECRET,
    turn_ttl_s=600,
    ice_servers=(IceServer(["turn:static.example:3478"], "static-user", STATIC_PASSWORD),),
)


def relay_address() -> str:
    """The machine's first non-loopback IPv4 address: relayed candidates there are what a
    real TURN server hands out (loopback ones the server's candidate screen refuses)."""
    import psutil

    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return "127.0.0.1"


def self_signed_certificate(directory, name: str) -> tuple[str, str]:
    """A certificate for `name` and its key, as PEM files (what certbot would leave)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "turn.crt", directory / "turn.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
async def coturn(tmp_path):
    """Debian's coturn listening on loopback in use-auth-secret mode, UDP and TCP on one
    port and TLS on TURN_TLS_PORT, relaying from the machine's own address (to loopback
    peers too)."""
    binary = shutil.which("turnserver")
    assert binary, "coturn is missing: `sh docker/debian-packages.sh test` installs it"
    cert, key = self_signed_certificate(tmp_path, TURN_TLS_NAME)
    process = await asyncio.create_subprocess_exec(
        binary,
        "-n",  # no configuration file: everything is on this line
        "--listening-ip=127.0.0.1",
        f"--listening-port={TURN_PORT}",
        f"--relay-ip={relay_address()}",
        "--use-auth-secret",
        f"--static-auth-secret={TURN_SECRET}",
        "--realm=lighthouse.test",
        f"--tls-listening-port={TURN_TLS_PORT}",
        f"--cert={cert}",
        f"--pkey={key}",
        "--no-dtls",
        "--no-cli",
        "--allow-loopback-peers",
        f"--pidfile={tmp_path}/turnserver.pid",
        "--log-file=stdout",
        "--simple-log",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield ("127.0.0.1", TURN_PORT)
    finally:
        process.terminate()
        await process.wait()


class Received(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: asyncio.Queue[tuple[bytes, tuple]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.datagrams.put_nowait((data, addr))


async def allocate(address: tuple[str, int], username: str, password: str):
    """A TURN allocation on coturn; retried while coturn is still starting."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await create_turn_endpoint(
                Received, server_addr=address, username=username, password=password
            )
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def joined_reply(server, participant: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.base_url.replace("http", "ws") + "/ws") as ws:
            token = server.token(participant, "terminal")
            await ws.send_str(json.dumps({"type": "join", "id": 1, "token": token}))
            while True:
                reply = json.loads((await ws.receive(timeout=10)).data)
                if reply.get("id") == 1:
                    return reply


async def test_a_joined_client_gets_turn_credentials_that_coturn_accepts(server, coturn):
    reply = await joined_reply(server, "terminal:7")
    assert reply["type"] == "joined"
    servers = reply["ice_servers"]
    static, minted = servers
    assert static == {
        "urls": ["turn:static.example:3478"],
        "username": "static-user",
        "credential": STATIC_PASSWORD,
    }
    expiry, user = minted["username"].split(":")
    assert user == "terminal-7"  # the separator ':' never appears in the user part
    assert 590 <= int(expiry) - time.time() <= 600

    # coturn recomputes the password from its static-auth-secret and relays with it
    transport, _ = await allocate(coturn, minted["username"], minted["credential"])
    peer_transport, peer = await asyncio.get_running_loop().create_datagram_endpoint(
        Received, local_addr=("127.0.0.1", 0)
    )
    try:
        transport.sendto(b"through the relay", peer_transport.get_extra_info("sockname"))
        data, source = await asyncio.wait_for(peer.datagrams.get(), 5)
        assert data == b"through the relay"
        assert source[1] != TURN_PORT  # it came from the allocation's relayed address
    finally:
        transport.close()
        peer_transport.close()

    # each session its own credential: another participant's differs
    other = (await joined_reply(server, "terminal:8"))["ice_servers"][1]
    assert other["username"].endswith(":terminal-8") and other["credential"] != minted["credential"]


async def test_coturn_refuses_a_forged_or_expired_credential(coturn):
    minted = TurnRestCredentials(TURN_SECRET, ("turn:x",), ttl_s=600).mint("terminal:7")
    assert minted.username is not None
    transport, _ = await allocate(coturn, minted.username, minted.credential or "")
    transport.close()  # coturn is up and the real one works
    forged = TurnRestCredentials("another-secret-" + "y" * 20, ("turn:x",)).mint("terminal:7")
    expired = TurnRestCredentials(TURN_SECRET, ("turn:x",), ttl_s=600).mint(
        "terminal:7", now=time.time() - 700
    )
    for credential in (forged, expired):
        assert credential.username is not None
        with pytest.raises(TransactionFailed) as refused:
            await allocate(coturn, credential.username, credential.credential or "")
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401


async def test_no_page_carries_ice_servers_or_credentials(server):
    async with aiohttp.ClientSession() as session:
        pages = ["/tv", "/tv/pair", f"/join?token={server.token('village:1', 'viewer')}"]
        pages.append(f"/main?token={server.token('county:1', 'main')}")
        for path in pages:
            async with session.get(server.base_url + path) as response:
                assert response.status == 200, path
                html = await response.text()
            for secret in (STATIC_PASSWORD, "static-user", "turn:", "iceServers"):
                assert secret not in html, (path, secret)
