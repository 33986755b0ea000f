"""``Verdict.to_dict`` / ``match_dict`` build the record field by field (the parent and the
worker each convert every verdict of a batch scan): the same dict, key order and JSON bytes
as ``dataclasses.asdict`` gave, and copies of the containers, not the verdict's own."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from scanner.verdict import CLEAR, FLAG, UNSCANNABLE, Match, Verdict, match_dict


def _reference(v: Verdict) -> dict:
    """What to_dict returned when it was ``asdict`` with the local-only fields dropped."""
    d = asdict(v)
    local_only = ("patches_matched", "patches_total")
    d["matches"] = [{k: x for k, x in asdict(m).items() if not (k in local_only and x is None)} for m in v.matches]
    return d


VERDICTS = [
    Verdict(
        path="a.stl",
        member=None,
        verdict=CLEAR,
        scores={"benign": 0.9, "barrel": 0.1},
        review_score=0.1,
        review_threshold=0.5,
        scanned_at="2026-12-01T00:00:00+00:00",
    ),  # fmt: skip
    Verdict(
        path="b.zip",
        member="x/y.obj",
        verdict=FLAG,
        category="barrel",
        sha256="ab" * 32,
        bodies=3,
        triangles=480,
        matches=[
            Match("ms-1", "barrel", 0.01, 0.02, None),
            Match(
                "ms-2",
                "barrel",
                0.2,
                0.95,
                1,
                kind="local",
                signature_share=0.8,
                patches_matched=40,
                patches_total=50,
                publisher="p",
                publisher_key="k",
            ),
        ],
        review_body={"body": 2, "share": 0.4},
        distance_threshold=0.08,
        explanation="why",
    ),  # fmt: skip
    Verdict(path="c.bin", member=None, verdict=UNSCANNABLE, reason="corrupt", detail="no triangle"),
]


@pytest.mark.parametrize("verdict", VERDICTS, ids=["clear", "flag-with-local", "unscannable"])
def test_the_record_is_what_asdict_gave(verdict: Verdict) -> None:
    d = verdict.to_dict()
    assert d == _reference(verdict)
    assert list(d) == list(_reference(verdict))
    assert json.dumps(d) == json.dumps(_reference(verdict))
    assert Verdict.from_dict(json.loads(json.dumps(d))) == verdict


def test_containers_are_copies() -> None:
    v = VERDICTS[1]
    d = v.to_dict()
    d["scores"]["x"] = 1.0
    d["review_body"]["body"] = 99
    d["matches"][0]["distance"] = 5.0
    assert "x" not in v.scores and v.review_body == {"body": 2, "share": 0.4} and v.matches[0].distance == 0.01


def test_a_match_keeps_its_local_fields_only_when_local() -> None:
    plain, local = VERDICTS[1].matches
    assert "patches_matched" not in match_dict(plain) and match_dict(local)["patches_total"] == 50
