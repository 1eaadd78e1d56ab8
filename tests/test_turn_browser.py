"""TURN for real: Chromium with iceTransportPolicy "relay" (everything through the TURN
server, as on a network that blocks direct UDP) watches the main venue through Debian's
coturn, over UDP, over TCP and over TLS (on 443 where the tests may bind it: an office
firewall that lets only HTTPS out), with the credential the server minted for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_turn import TURN_TLS_NAME, coturn  # noqa: F401 (the fixture)
from test_turn import pytestmark as turn_settings

from signaling.client import SignalingClient

from browser import chromium_args, launched_chromium, write_y4m
from media import PictureTrack, face_picture

pytestmark = [pytest.mark.browser, turn_settings]


# which of the server's TURN URLs each case keeps, and the relay protocol it must end on
TRANSPORTS = {
    "udp": ("turn:", "?transport=udp"),
    "tcp": ("turn:", "?transport=tcp"),
    "tls": ("turns:", "?transport=tcp"),
}


@pytest.mark.usefixtures("coturn")
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_a_relay_only_browser_watches_through_coturn(server, tmp_path: Path, transport):
    picture = face_picture()
    camera = write_y4m(tmp_path / "face.y4m", picture)
    main = SignalingClient(server.base_url, server.token("county-main", "main", name="县委"))
    await main.connect()
    await main.publish([PictureTrack(picture)])
    try:
        args = [
            *chromium_args(camera),
            f"--host-resolver-rules=MAP {TURN_TLS_NAME} 127.0.0.1",
            # the test's coturn has a self-signed certificate; a county's has a real one
            "--ignore-certificate-errors",
        ]
        async with launched_chromium(args) as browser:
            context = await browser.new_context()
            page = await context.new_page()
            logs: list[str] = []
            page.on("console", lambda msg: logs.append(msg.text))
            await page.goto(f"{server.base_url}/")
            await page.add_script_tag(url="/static/lighthouse.js")
            await page.evaluate(
                """([token, scheme, suffix]) => {
                    const client = new LighthouseClient(
                        {token, publish: false, iceTransportPolicy: 'relay'});
                    client.on('joined', () => {
                        // this transport only: the server's list has both
                        client.iceServers = client.iceServers.map((s) => Object.assign({}, s, {
                            urls: [].concat(s.urls).filter(
                                (u) => u.startsWith(scheme) && u.endsWith(suffix)),
                        })).filter((s) => s.urls.length);
                    });
                    const stage = document.body.appendChild(document.createElement('main'));
                    client.on('subscriptionadded', ({subscription}) =>
                        stage.appendChild(subscription.videoElement));
                    window.lighthouse = client;
                    client.start();
                }""",
                [server.token("relay-viewer", "viewer", name="县机关"), *TRANSPORTS[transport]],
            )
            try:
                await page.wait_for_function(
                    """() => Object.values(window.lighthouse.subscriptions).some((s) =>
                        s.videoElement.videoWidth > 0
                        && s.videoElement.getVideoPlaybackQuality().totalVideoFrames >= 10)""",
                    polling=100,
                    timeout=25_000,
                )
            except Exception:
                print("page console:", *logs, sep="\n  ")
                raise
            pair = await page.evaluate(
                """async () => {
                    const sub = Object.values(window.lighthouse.subscriptions)[0];
                    const stats = await sub.pc.getStats();
                    let selected = null;
                    stats.forEach((r) => {
                        if (r.type === 'transport' && r.selectedCandidatePairId) {
                            selected = stats.get(r.selectedCandidatePairId);
                        }
                    });
                    const local = selected && stats.get(selected.localCandidateId);
                    return local && {type: local.candidateType, relay: local.relayProtocol};
                }"""
            )
            assert pair == {"type": "relay", "relay": transport}, pair
            await context.close()
    finally:
        await main.close()
