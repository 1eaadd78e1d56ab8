"""The harder face set (bench/faceset.py: 23 people from the faces in packages, half of
them enrolled from a photo taken another way, shown at 80-130 px, rolled, dimmed, under
another light, through H.264 at 300-800 kbit/s) at the default settings: every member's
decisions sign them in, and in an hour on camera nobody is taken for someone else. At
the earlier threshold 0.37 one stranger was, and 0.135 % of tracks were false. Then the
set as a meeting with liveness on: three at a time, heads moving."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faceset import DEFAULT_RULE, PRODUCT, identities, live_meeting, measure
from recognition.engine import load_engine


def test_the_harder_face_set_signs_in_every_member_and_nobody_falsely_in_an_hour():
    result = measure(load_engine(), views=8, tracks=300, variants=(PRODUCT,))
    print(result)
    assert result["refused_at_enrolment"] == [] and result["views_without_face"] == 0
    assert result["at_default"]["true"] >= 0.99  # per decision; each member has hundreds
    assert result["at_default"]["false"] <= 0.001  # per track (issue 18's target)
    threshold, margin = DEFAULT_RULE
    assert result["hour_false_people"][f"{threshold:.2f}/{margin:.2f}"] == 0


@pytest.fixture(scope="module")
def meeting(tmp_path_factory) -> dict:
    people = identities(load_engine())
    directory = Path(tmp_path_factory.mktemp("meeting"))
    return live_meeting(people, sorted(people)[::2], directory)


def test_the_set_as_a_meeting_signs_in_its_live_members_with_liveness_on(meeting):
    print(meeting)
    assert meeting["live_signed_in"] == meeting["live_members"] == 10, meeting["missed"]
    assert meeting["signed_in_while_away"] == []


@pytest.mark.xfail(
    strict=True,
    reason="issue 18, open: Tom's picture is a 112-px crop that his face fills, so a hand "
    "held it with no margin and the aligned crop takes in its replicated edge, which moves "
    "unlike the photo: residual 0.0215 over the 0.018 limit (t1_4's photo: 0.008)",
)
def test_members_shown_only_as_a_photo_in_a_hand_are_not_signed_in(meeting):
    assert meeting["held_photos_signed_in"] == []
