"""XEP-0202 Entity Time: the server reports its UTC time and time-zone offset (urn:xmpp:time).

`<utc/>` is a XEP-0082 §3.2 DateTime in UTC ('Z'), `<tzo/>` the XEP-0082 TZD of the server's
local zone as `±hh:mm` (the form of the XEP-0202 examples; ejabberd reports the local offset
too). Only the server answers: entity time belongs to the entity asked, so a query to an
account's bare JID gets <service-unavailable/> from the router (RFC 6121 §8.5.2.1.3) and a query to
a full JID is delivered to that client.

The file is named entity_time.py so that it does not shadow the standard library's `time`;
the module's name is still "time".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from blether import ns
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, iq_handler
from blether.xml.element import Element


def tzd(offset: timedelta) -> str:
    """XEP-0082 §2 TZD of a UTC offset, always as (+|-)hh:mm."""
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def utc_datetime(moment: datetime) -> str:
    """XEP-0082 §3.2 DateTime profile in UTC, CCYY-MM-DDThh:mm:ss[.sss]Z (milliseconds)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TimeModule(Module):
    name = "time"
    specs = (XEP(202, "2.0", "complete", "for the server"),
             XEP(82, "1.1.1", "complete", "DateTime and TZD formats of XEP-0202"))
    host_features = (ns.TIME,)

    @iq_handler("get", ns.TIME, Target.HOST)
    async def entity_time(self, req: IqRequest) -> Element:
        now = datetime.now(UTC)
        offset = now.astimezone().utcoffset() or timedelta(0)
        return req.result(Element("time", ns.TIME, None, [
            Element("tzo", ns.TIME, None, [tzd(offset)]),
            Element("utc", ns.TIME, None, [utc_datetime(now)]),
        ]))
