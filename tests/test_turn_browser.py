"""TURN for real: Chromium with iceTransportPolicy "relay" (everything through the TURN
server, as on a network that blocks direct UDP) watches the main venue through Debian's
coturn, over UDP and over TCP, with the credential the server minted for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_turn import coturn  # noqa: F401 (the fixture)
from test_turn import pytestmark as turn_settings

from signaling.client import SignalingClient

from browser import chromium_args, launched_chromium, write_y4m
from media import PictureTrack, face_picture

pytestmark = [pytest.mark.browser, turn_settings]


@pytest.mark.usefixtures("coturn")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_relay_only_browser_watches_through_coturn(server, tmp_path: Path, transport):
    picture = face_picture()
    camera = write_y4m(tmp_path / "face.y4m", picture)
    main = SignalingClient(server.base_url, server.token("county-main", "main", name="县委"))
    await main.connect()
    await main.publish([PictureTrack(picture)])
    try:
        async with launched_chromium(chromium_args(camera)) as browser:
            context = await browser.new_context()
            page = await context.new_page()
            logs: list[str] = []
            page.on("console", lambda msg: logs.append(msg.text))
            await page.goto(f"{server.base_url}/")
            await page.add_script_tag(url="/static/lighthouse.js")
            await page.evaluate(
                """([token, transport]) => {
                    const client = new LighthouseClient(
                        {token, publish: false, iceTransportPolicy: 'relay'});
                    client.on('joined', () => {
                        // this transport only: the server's list has both
                        client.iceServers = client.iceServers.map((s) => Object.assign({}, s, {
                            urls: [].concat(s.urls).filter((u) => u.endsWith(transport)),
                        })).filter((s) => s.urls.length);
                    });
                    const stage = document.body.appendChild(document.createElement('main'));
                    client.on('subscriptionadded', ({subscription}) =>
                        stage.appendChild(subscription.videoElement));
                    window.lighthouse = client;
                    client.start();
                }""",
                [server.token("relay-viewer", "viewer", name="县机关"), transport],
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
