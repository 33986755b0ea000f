"""The subscribed library's audit log: a hash chain with the review audit log's formula."""

from __future__ import annotations

import copy

from scanner.exchange.events import GENESIS, append_event, head, verify_events
from scanner.review.audit import canonical, chain_hash


def chain() -> list[dict]:
    events: list[dict] = []
    append_event(events, {"at": "t1", "action": "update", "to": 1})
    append_event(events, {"at": "t2", "action": "disable", "ids": ["ms-1", "ms-2"], "by": "carol", "why": "x"})
    append_event(events, {"at": "t3", "action": "enable", "ids": ["ms-1"], "by": "dave", "why": "y"})
    return events


def test_chain_uses_the_review_logs_formula_and_verifies() -> None:
    events = chain()
    assert events[0]["prev_hash"] == GENESIS and [e["seq"] for e in events] == [1, 2, 3]
    for e in events:
        body = {k: v for k, v in e.items() if k not in ("prev_hash", "hash")}
        assert e["hash"] == chain_hash(e["prev_hash"], canonical(body))
    check = verify_events(events, {"ms-2": {"by": "carol"}})
    assert check.ok and check.head == head(events) == events[-1]["hash"] and check.chained == 3


def test_edits_reorders_and_list_edits_are_caught() -> None:
    edited = chain()
    edited[1]["by"] = "mallory"
    assert not verify_events(edited).ok
    swapped = chain()
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert not verify_events(swapped).ok
    assert not verify_events(chain(), {}).ok  # ms-2 was disabled, never enabled
    assert not verify_events(chain(), {"ms-1": {}, "ms-2": {}}).ok  # ms-1 enabled again
    rewritten = copy.deepcopy(chain())
    rewritten[2] = {"at": "t3", "action": "enable", "ids": ["ms-2"]}
    assert not verify_events(rewritten).ok


def test_events_from_before_the_chain_still_load_with_a_note() -> None:
    legacy = [{"at": "t0", "action": "update", "to": 1}, {"at": "t0", "action": "disable", "ids": ["ms-9"]}]
    append_event(legacy, {"at": "t1", "action": "update", "to": 2})
    check = verify_events(legacy, {"ms-9": {}})
    assert check.ok and check.chained == 1 and check.notes and legacy[-1]["seq"] == 1
