"""Shared by the collector tests: this folder on sys.path (the fake servers live here), and the
M365 fake (``fake_o365``) as a fixture. Nothing here skips or imports optional packages at import
time, so other collectors' tests are unaffected."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def make_fake(ca) -> Iterator:
    """Factory for started-by-the-test ``FakeO365`` servers (stopped at teardown)."""
    from fake_o365 import FakeO365
    started: list[FakeO365] = []

    def make(**kwargs) -> FakeO365:
        fake = FakeO365(ca=ca, **kwargs)
        started.append(fake)
        return fake

    yield make
    for f in started:
        f.stop()
