"""The settle stage, driven directly: synthetic watchdog events, a fake clock, a fake stat."""

from __future__ import annotations

import pytest
from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from scanner.watch.settle import SettleConfig, SettleHandler, is_ignored


class World:
    """A fake clock (monotonic and wall move together) and a fake file system."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.files: dict[str, tuple[int, int]] = {}

    def write(self, path: str, size: int) -> None:
        self.files[path] = (size, int(self.now * 1e9))

    def handler(self, **cfg: object) -> SettleHandler:
        config = SettleConfig(**{"settle": 2.0, "close_delay": 0.2, "open_timeout": 30.0, **cfg})
        return SettleHandler(config, clock=lambda: self.now, wall=lambda: self.now, stat=self.files.get)

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def w() -> World:
    return World()


def paths(ready: list) -> list[str]:
    return [r.path for r in ready]


def test_close_after_write_is_due_after_the_close_delay_not_before(w: World) -> None:
    h = w.handler()
    w.write("/up/a.stl", 10)
    h.dispatch(FileCreatedEvent("/up/a.stl"))
    h.dispatch(FileModifiedEvent("/up/a.stl"))
    w.tick(5)
    w.write("/up/a.stl", 20)
    h.dispatch(FileModifiedEvent("/up/a.stl"))
    assert h.due() == []  # open for writing: waits for the close however long it takes
    h.dispatch(FileClosedEvent("/up/a.stl"))
    w.tick(0.1)
    assert h.due() == []
    w.tick(0.1)
    ready = h.due()
    assert paths(ready) == ["/up/a.stl"] and ready[0].how == "closed" and ready[0].stat == (20, w.files["/up/a.stl"][1])
    assert h.due() == [] and len(h) == 0


def test_a_write_after_the_close_makes_it_wait_for_the_next_close(w: World) -> None:
    h = w.handler()
    w.write("/up/a.stl", 10)
    h.dispatch(FileClosedEvent("/up/a.stl"))
    w.tick(0.1)
    w.write("/up/a.stl", 3)  # rewritten (truncated) before its modify event is in
    w.tick(0.2)
    assert h.due() == []
    w.tick(20)
    assert h.due() == []  # taken as still open; quiet for less than open_timeout
    h.dispatch(FileClosedEvent("/up/a.stl"))
    w.tick(0.2)
    assert paths(h.due()) == ["/up/a.stl"]


def test_writer_that_never_closes_is_scanned_after_the_open_timeout(w: World) -> None:
    h = w.handler()
    w.write("/up/hung.bin", 5)
    h.dispatch(FileModifiedEvent("/up/hung.bin"))
    w.tick(29)
    assert h.due() == []
    w.tick(2)
    ready = h.due()
    assert paths(ready) == ["/up/hung.bin"] and ready[0].how == "open-timeout"


def test_without_close_events_a_file_is_due_when_quiet_for_the_settle_time(w: World) -> None:
    h = w.handler(close_events=False)
    w.write("/up/a.stl", 10)
    h.dispatch(FileCreatedEvent("/up/a.stl"))
    w.tick(1.5)
    w.write("/up/a.stl", 20)
    h.dispatch(FileModifiedEvent("/up/a.stl"))
    w.tick(1.5)
    assert h.due() == []  # written 1.5 s ago
    w.tick(0.6)
    assert paths(h.due()) == ["/up/a.stl"]


def test_reconciled_old_file_is_due_at_once_and_a_fresh_one_after_settling(w: World) -> None:
    h = w.handler()
    w.write("/up/old.stl", 10)
    w.tick(60)
    w.write("/up/new.stl", 10)
    h.seen("/up/old.stl", w.files["/up/old.stl"])
    h.seen("/up/new.stl", w.files["/up/new.stl"])
    assert paths(h.due()) == ["/up/old.stl"]
    w.tick(1.0)
    assert h.due() == []
    assert h.next_check() == pytest.approx(1.0)
    w.tick(1.0)
    assert paths(h.due()) == ["/up/new.stl"]


def test_temp_then_rename_is_due_once_under_its_final_name(w: World) -> None:
    h = w.handler()
    for name in ("/up/.a.stl.part", "/up/a.stl.part", "/up/.~a.stl"):
        w.write(name, 10)
        h.dispatch(FileCreatedEvent(name))
        h.dispatch(FileModifiedEvent(name))
        h.dispatch(FileClosedEvent(name))
    assert len(h) == 0  # temporary names are never considered
    w.files["/up/a.stl"] = w.files.pop("/up/.a.stl.part")
    h.dispatch(FileMovedEvent("/up/.a.stl.part", "/up/a.stl"))
    w.tick(0.2)
    ready = h.due()
    assert paths(ready) == ["/up/a.stl"] and ready[0].how == "closed"


def test_rename_of_a_known_pending_file_moves_its_state(w: World) -> None:
    h = w.handler()
    w.write("/up/a.tmpx", 10)
    h.dispatch(FileModifiedEvent("/up/a.tmpx"))  # still being written under a name we do watch
    w.files["/up/a.stl"] = w.files.pop("/up/a.tmpx")
    h.dispatch(FileMovedEvent("/up/a.tmpx", "/up/a.stl"))
    w.tick(1)
    assert h.due() == [] and list(h.pending) == ["/up/a.stl"]  # renamed while open: wait for the close
    h.dispatch(FileClosedEvent("/up/a.stl"))
    w.tick(0.2)
    assert paths(h.due()) == ["/up/a.stl"]


def test_deleted_before_due_is_dropped_quietly(w: World) -> None:
    h = w.handler()
    w.write("/up/a.stl", 10)
    h.dispatch(FileClosedEvent("/up/a.stl"))
    h.dispatch(FileDeletedEvent("/up/a.stl"))
    w.tick(1)
    assert h.due() == [] and len(h) == 0
    w.write("/up/b.stl", 10)
    h.dispatch(FileCreatedEvent("/up/b.stl"))
    del w.files["/up/b.stl"]  # gone without our seeing the event
    w.tick(3)
    assert h.due() == [] and len(h) == 0
    w.write("/up/d/c.stl", 1)
    h.dispatch(FileClosedEvent("/up/d/c.stl"))
    h.dispatch(DirDeletedEvent("/up/d"))
    assert len(h) == 0


def test_reads_and_excluded_paths_are_not_events(w: World) -> None:
    h = w.handler(exclude=("/up/quarantine", "/up/state.sqlite"))
    w.write("/up/a.stl", 1)
    h.dispatch(FileOpenedEvent("/up/a.stl"))
    h.dispatch(FileClosedNoWriteEvent("/up/a.stl"))  # our own scan reading it
    h.dispatch(FileClosedEvent("/up/quarantine/x/a.stl"))
    h.dispatch(FileModifiedEvent("/up/state.sqlite"))
    assert len(h) == 0
    h.dispatch(FileClosedEvent("/up/quarantined.stl"))  # a sibling sharing a prefix is not excluded
    assert list(h.pending) == ["/up/quarantined.stl"]


def test_oldest_first_and_ignore_patterns() -> None:
    assert is_ignored("/x/.hidden", [".*"]) and is_ignored("/x/a.STL.part", ["*.part"])
    assert not is_ignored("/x/a.stl", ["*.part", ".*"]) and not is_ignored("/x.d/a", [".*"])
    w = World()
    h = w.handler()
    for name in ("/up/b", "/up/a", "/up/c"):
        w.write(name, 1)
        h.dispatch(FileClosedEvent(name))
        w.tick(0.01)
    w.tick(0.2)
    assert paths(h.due()) == ["/up/b", "/up/a", "/up/c"]
