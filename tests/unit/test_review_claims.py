"""Claims on review items (scanner/review/claims.py): held, renewed, refused to others, expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanner.review import ReviewError
from scanner.review.claims import ClaimBook
from scanner.store.results import ResultsStore

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture()
def book(tmp_path: Path) -> ClaimBook:
    ResultsStore(tmp_path / "r.sqlite").close()
    return ClaimBook(ResultsStore.open_existing(tmp_path / "r.sqlite", readonly=False), minutes=30)


def test_nothing_is_claimed_before_the_table_exists(book: ClaimBook) -> None:
    assert book.active(T0) == {} and book.holder("a" * 64, T0) is None
    assert book.release("a" * 64, "Ann", T0) is False


def test_a_claim_holds_against_others_until_it_expires(book: ClaimBook) -> None:
    item = "a" * 64
    claim = book.claim(item, "Ann", T0)
    assert (claim.by, claim.claimed_at, claim.expires_at) == ("Ann", "2026-11-30T12:00:00+00:00",
                                                              "2026-11-30T12:30:00+00:00")  # fmt: skip
    with pytest.raises(ReviewError, match="claimed by Ann until 2026-11-30T12:30:00") as refused:
        book.claim(item, "Bo", T0 + timedelta(minutes=29))
    assert refused.value.code == "claimed"
    with pytest.raises(ReviewError):
        book.release(item, "Bo", T0 + timedelta(minutes=1))
    renewed = book.claim(item, "Ann", T0 + timedelta(minutes=20))  # the holder renews
    assert renewed.expires_at == "2026-11-30T12:50:00+00:00"
    assert book.holder(item, T0 + timedelta(minutes=49)).by == "Ann"
    assert book.holder(item, T0 + timedelta(minutes=50)) is None  # expired: nobody holds it
    taken = book.claim(item, "Bo", T0 + timedelta(minutes=51))
    assert taken.by == "Bo" and set(book.active(T0 + timedelta(minutes=52))) == {item}


def test_release_and_clear(book: ClaimBook) -> None:
    book.claim("a" * 64, "Ann", T0)
    book.claim("b" * 64, "Bo", T0)
    assert book.release("a" * 64, "Ann", T0) is True
    book.clear("b" * 64)
    assert book.active(T0) == {}
