"""The quiet period and the temporary-name heuristic of the settle stage, driven with synthetic
events and a fake clock (see test_watch_settle.py for the World)."""

from __future__ import annotations

from watchdog.events import FileClosedEvent, FileCreatedEvent, FileModifiedEvent, FileOpenedEvent

from scanner.watch.settle import looks_temporary
from tests.unit.test_watch_settle import World, paths


def test_an_upload_appended_in_cycles_is_due_once_after_its_last_close() -> None:
    w = World()
    h = w.handler(close_delay=1.0)
    for size in range(1, 6):  # five open / write / close cycles, 0.6 s apart
        h.dispatch(FileOpenedEvent("/up/a.stl"))
        h.dispatch(FileModifiedEvent("/up/a.stl"))
        w.write("/up/a.stl", size)
        h.dispatch(FileClosedEvent("/up/a.stl"))
        w.tick(0.6)
        assert h.due() == []
    w.tick(0.5)
    ready = h.due()
    assert paths(ready) == ["/up/a.stl"] and ready[0].stat == (5, w.files["/up/a.stl"][1])


def test_an_open_within_the_quiet_period_starts_it_again() -> None:
    w = World()
    h = w.handler(close_delay=1.0)
    w.write("/up/a.stl", 1)
    h.dispatch(FileClosedEvent("/up/a.stl"))
    w.tick(0.8)
    h.dispatch(FileOpenedEvent("/up/a.stl"))  # the uploader is back (about to append)
    w.tick(0.8)
    assert h.due() == []
    w.tick(0.3)
    assert paths(h.due()) == ["/up/a.stl"]
    h.dispatch(FileOpenedEvent("/up/a.stl"))  # our own scan reading it: not waiting, ignored
    assert len(h) == 0


def test_a_name_that_looks_temporary_waits_for_its_own_quiet_period() -> None:
    assert looks_temporary("/up/part.stl.uploading") and looks_temporary("/up/a.b.3MF.x1y2")
    assert not looks_temporary("/up/part.stl") and not looks_temporary("/up/part.tar.gz")
    assert not looks_temporary("/up/v1.2.notes") and not looks_temporary("/up/readme")
    w = World()
    h = w.handler(close_delay=1.0, temp_quiet=10.0, settle=2.0)
    w.write("/up/part.stl.uploading", 1)
    h.dispatch(FileClosedEvent("/up/part.stl.uploading"))
    w.write("/up/found.obj.tmp1", 1)
    h.seen("/up/found.obj.tmp1", w.files["/up/found.obj.tmp1"])  # found by a reconciliation
    h.dispatch(FileCreatedEvent("/up/ok.stl"))
    w.write("/up/ok.stl", 1)
    h.dispatch(FileClosedEvent("/up/ok.stl"))
    w.tick(2.5)
    assert paths(h.due()) == ["/up/ok.stl"]
    w.tick(5)
    assert h.due() == []
    w.tick(3)
    assert sorted(paths(h.due())) == ["/up/found.obj.tmp1", "/up/part.stl.uploading"]
