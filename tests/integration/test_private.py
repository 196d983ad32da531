"""XEP-0049 Private XML Storage over real TCP with slixmpp clients."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from integration.harness import ServerProcess, ns

P = "jabber:iq:private"
ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"


def error_condition(reply: ET.Element) -> str | None:
    err = reply.find(ns("error"))
    if err is None:
        return None
    conds = [c.tag.split("}")[1] for c in err
             if c.tag.startswith(f"{{{ERR}}}") and not c.tag.endswith("}text")]
    return conds[0] if conds else None


async def test_store_and_retrieve_across_sessions(server: ServerProcess, connect: Any) -> None:
    # §2.3 "Client Stores Private Data" then, from a later session, "Client Retrieves".
    (jid,) = server.new_users(1)
    hamlet = await connect(jid)
    reply = await hamlet.query(f"<iq type='set' id='1001'><query xmlns='{P}'>"
                               "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick>"
                               "</exodus></query></iq>")
    assert reply.get("type") == "result"
    await hamlet.close()
    hamlet = await connect(jid, resource="denmark")
    reply = await hamlet.query(f"<iq type='get' id='1002'><query xmlns='{P}'>"
                               "<exodus xmlns='exodus:prefs'/></query></iq>")
    assert reply.get("type") == "result"
    assert reply.findtext(f"{{{P}}}query/{{exodus:prefs}}exodus/{{exodus:prefs}}defaultnick") \
        == "Hamlet"


async def test_nothing_stored_gives_the_empty_element(server: ServerProcess,
                                                       connect: Any) -> None:
    (jid,) = server.new_users(1)
    hamlet = await connect(jid)
    reply = await hamlet.query(f"<iq type='get' id='g'><query xmlns='{P}'>"
                               "<storage xmlns='storage:bookmarks'/></query></iq>")
    storage = reply.find(f"{{{P}}}query/{{storage:bookmarks}}storage")
    assert reply.get("type") == "result" and storage is not None and len(storage) == 0


async def test_another_users_private_data_is_forbidden(server: ServerProcess,
                                                        connect: Any) -> None:
    h, m = server.new_users(2)
    hamlet = await connect(h)
    macbeth = await connect(m)
    await hamlet.query(f"<iq type='set' id='1'><query xmlns='{P}'><exodus xmlns='exodus:prefs'>"
                       "<defaultnick>Hamlet</defaultnick></exodus></query></iq>")
    reply = await macbeth.query(f"<iq type='set' to='{h}' id='1003'><query xmlns='{P}'>"
                                "<exodus xmlns='exodus:prefs'><defaultnick>Macbeth</defaultnick>"
                                "</exodus></query></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "forbidden"
    reply = await macbeth.query(f"<iq type='get' to='{h}' id='1004'><query xmlns='{P}'>"
                                "<exodus xmlns='exodus:prefs'/></query></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "forbidden"
    reply = await hamlet.query(f"<iq type='get' id='2'><query xmlns='{P}'>"
                               "<exodus xmlns='exodus:prefs'/></query></iq>")
    assert reply.findtext(".//{exodus:prefs}defaultnick") == "Hamlet"


async def test_reserved_namespace_is_not_acceptable(server: ServerProcess, connect: Any) -> None:
    # §2.3 "User Attempts to Get or Set Data in a Reserved Namespace".
    (jid,) = server.new_users(1)
    hamlet = await connect(jid)
    reply = await hamlet.query(f"<iq type='set' id='1005'><query xmlns='{P}'>"
                               "<vCard xmlns='vcard-temp'><FN>Hamlet</FN></vCard></query></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "not-acceptable"


async def test_empty_query_is_not_acceptable(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    hamlet = await connect(jid)
    reply = await hamlet.query(f"<iq type='get' id='1006'><query xmlns='{P}'/></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "not-acceptable"


async def test_slixmpp_bookmarks_round_trip(server: ServerProcess, connect: Any) -> None:
    # What real clients do with XEP-0049: XEP-0048 bookmarks through slixmpp's plugin.
    (jid,) = server.new_users(1)
    hamlet = await connect(jid)
    hamlet.register_plugin("xep_0049")
    hamlet.register_plugin("xep_0048")
    bookmarks = hamlet.plugin["xep_0048"].stanza.Bookmarks()
    bookmarks.add_conference("elsinore@conference.localhost", "hamlet", autojoin=True)
    await hamlet.plugin["xep_0049"].store(bookmarks)
    got = await hamlet.plugin["xep_0049"].retrieve("bookmarks")
    stored = got["private"]["bookmarks"]
    assert [c["jid"] for c in stored["conferences"]] == ["elsinore@conference.localhost"]
