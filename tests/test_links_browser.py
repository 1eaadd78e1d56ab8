"""A TV on a lossy village link, through the SFU: Debian's Chromium running the TV's client
(web/static/lighthouse.js), its connection impaired at the SFU's end (bench/impair.py's
village_10: 10 % loss each way, 100 ± 50 ms, 1 Mbit/s), watching a main venue's ~500
kbit/s VP8 and Opus. The harness is bench/links.py's; its figures are in
docs/benchmarks.md. Before the SFU paced its re-sends and the TV held its video back for
them, this TV's picture stood still 90-99 % of the time."""

from __future__ import annotations

import pytest

from bench.links import run

pytestmark = pytest.mark.browser


async def test_a_tv_on_a_lossy_link_keeps_its_picture_and_sound_and_recovers_from_an_outage():
    result = await run(["village_10", "outage"], seconds=8.0)
    lossy, outage = result["results"]
    print(lossy, outage, sep="\n")
    assert lossy["to_village_dropped"] > 50  # the link really lost packets
    assert lossy["resent_by_sfu"] > 20
    # every copy the SFU sends costs the link: about one per lost packet, not a storm
    assert lossy["resent_by_sfu"] < 2 * lossy["to_village_dropped"]
    assert lossy["tv_playout_delay_ms"] > 0  # the TV waits for copies
    # targets (issue 17): frozen < 5 %, concealed < 10 %; bench/links.py measures
    # 1-11 % and 7-9 %: the margin is a loaded CI machine's
    assert lossy["frozen_share"] < 0.2
    assert lossy["concealed_share"] < 0.15
    # target: the picture back within 1 s of the link (measured 0.8-1.0 s)
    assert outage["recovery_s"] is not None and outage["recovery_s"] < 2.0
