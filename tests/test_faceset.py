"""The harder face set (bench/faceset.py: 23 people from the faces in packages, half of
them enrolled from a photo taken another way, shown at 80-130 px, rolled, dimmed, under
another light, through H.264 at 300-800 kbit/s) at the default settings: every member's
decisions sign them in, and in an hour on camera nobody is taken for someone else. At
the earlier threshold 0.37 one stranger was, and 0.135 % of tracks were false."""

from __future__ import annotations

from bench.faceset import DEFAULT_RULE, PRODUCT, measure
from recognition.engine import load_engine


def test_the_harder_face_set_signs_in_every_member_and_nobody_falsely_in_an_hour():
    result = measure(load_engine(), views=8, tracks=300, variants=(PRODUCT,))
    print(result)
    assert result["refused_at_enrolment"] == [] and result["views_without_face"] == 0
    assert result["at_default"]["true"] >= 0.99  # per decision; each member has hundreds
    assert result["at_default"]["false"] <= 0.001  # per track (issue 18's target)
    threshold, margin = DEFAULT_RULE
    assert result["hour_false_people"][f"{threshold:.2f}/{margin:.2f}"] == 0
