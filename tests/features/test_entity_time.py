"""XEP-0202 Entity Time for the server, in XEP-0082 formats."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from blether.features.entity_time import tzd, utc_datetime
from features.services_kit import Kit, condition

TIME = "urn:xmpp:time"
QUERY = f"<iq type='get' id='time_1' to='localhost'><time xmlns='{TIME}'/></iq>"
# XEP-0082 §3.2: CCYY-MM-DDThh:mm:ss[.sss]TZD, here in UTC.
DATETIME_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")


@pytest.mark.parametrize(("offset", "text"), [
    (timedelta(0), "+00:00"),
    (timedelta(hours=-6), "-06:00"),
    (timedelta(hours=5, minutes=30), "+05:30"),
    (timedelta(hours=-3, minutes=-30), "-03:30"),
    (timedelta(hours=13, minutes=45), "+13:45"),
])
def test_tzd(offset: timedelta, text: str) -> None:
    assert tzd(offset) == text


def test_utc_datetime() -> None:
    moment = datetime(2006, 12, 19, 11, 58, 35, 123456, tzinfo=UTC) + timedelta(hours=6)
    assert utc_datetime(moment) == "2006-12-19T17:58:35.123Z"


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server's local zone is six hours behind UTC (POSIX TZ 'CST+6')."""
    monkeypatch.setenv("TZ", "CST+6")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("zone")
async def test_server_time() -> None:
    kit = await Kit.create(["time"])
    try:
        alice = await kit.login("alice@localhost/pc")
        reply = await kit.query(alice, QUERY)
        assert reply.attrs["type"] == "result" and reply.attrs["from"] == "localhost"
        el = reply.find("time", TIME)
        assert el is not None
        assert el.find_text("tzo", TIME) == "-06:00"
        utc = el.find_text("utc", TIME)
        assert utc is not None and DATETIME_UTC.fullmatch(utc), utc
        told = datetime.strptime(utc, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - told).total_seconds()) < 5
    finally:
        await kit.close()


async def test_accounts_do_not_answer_for_their_clients() -> None:
    kit = await Kit.create(["time"])
    try:
        alice = await kit.login("alice@localhost/pc")
        reply = await kit.query(alice, f"<iq type='get' id='t' to='alice@localhost'>"
                                       f"<time xmlns='{TIME}'/></iq>")
        assert condition(reply) == "service-unavailable"
    finally:
        await kit.close()
