"""XEP-0054 vcard-temp and XEP-0153 vCard-based avatars over real TCP with slixmpp clients."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from typing import Any

from integration.harness import ServerProcess, ns

V = "vcard-temp"
ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
AVATAR = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def vcard(body: str) -> str:
    return f"<vCard xmlns='{V}'>{body}</vCard>"


def error_condition(reply: ET.Element) -> str | None:
    err = reply.find(ns("error"))
    if err is None:
        return None
    conds = [c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{ERR}}}")
             and not c.tag.endswith("}text")]
    return conds[0] if conds else None


async def test_publish_and_retrieve_own_vcard(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    juliet = await connect(jid)
    reply = await juliet.query(f"<iq id='v2' type='set'>{vcard('<FN>Juliet Capulet</FN>')}</iq>")
    assert reply.get("type") == "result"
    reply = await juliet.query(f"<iq id='v1' type='get'><vCard xmlns='{V}'/></iq>")
    assert reply.get("type") == "result"
    assert reply.findtext(f"{{{V}}}vCard/{{{V}}}FN") == "Juliet Capulet"


async def test_own_vcard_before_publishing_is_empty(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    juliet = await connect(jid)
    reply = await juliet.query(f"<iq id='v1' type='get'><vCard xmlns='{V}'/></iq>")
    assert reply.get("type") == "result"
    card = reply.find(f"{{{V}}}vCard")
    assert card is not None and len(card) == 0


async def test_view_another_users_vcard(server: ServerProcess, connect: Any) -> None:
    # XEP-0054 §3.3: the server answers for the account (here while it is offline).
    j, r = server.new_users(2)
    juliet = await connect(j)
    await juliet.query(f"<iq id='v2' type='set'>{vcard('<NICKNAME>Jules</NICKNAME>')}</iq>")
    await juliet.close()
    romeo = await connect(r)
    reply = await romeo.query(f"<iq id='v3' to='{j}' type='get'><vCard xmlns='{V}'/></iq>")
    assert reply.get("type") == "result" and reply.get("from") == j
    assert reply.findtext(f"{{{V}}}vCard/{{{V}}}NICKNAME") == "Jules"


async def test_no_vcard_and_no_user_answer_alike(server: ServerProcess, connect: Any) -> None:
    j, r = server.new_users(2)
    romeo = await connect(r)
    reply = await romeo.query(f"<iq id='a' to='{j}' type='get'><vCard xmlns='{V}'/></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "service-unavailable"
    reply = await romeo.query(f"<iq id='b' to='nosuchuser@localhost' type='get'>"
                              f"<vCard xmlns='{V}'/></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "service-unavailable"


async def test_setting_another_users_vcard_is_forbidden(server: ServerProcess,
                                                         connect: Any) -> None:
    j, r = server.new_users(2)
    juliet = await connect(j)
    romeo = await connect(r)
    await juliet.query(f"<iq id='a' type='set'>{vcard('<FN>Juliet</FN>')}</iq>")
    reply = await romeo.query(f"<iq id='v2' to='{j}' type='set'>{vcard('<FN>Romeo</FN>')}</iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "forbidden"
    reply = await juliet.query(f"<iq id='b' type='get'><vCard xmlns='{V}'/></iq>")
    assert reply.findtext(f"{{{V}}}vCard/{{{V}}}FN") == "Juliet"


async def test_vcard_size_limit(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    juliet = await connect(jid)
    big = "x" * (70 * 1024)      # over the 64 KiB default, under the 256 KiB stanza limit
    reply = await juliet.query(f"<iq id='big' type='set'>{vcard(f'<DESC>{big}</DESC>')}</iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "not-acceptable"
    ok = "y" * (32 * 1024)
    reply = await juliet.query(f"<iq id='ok' type='set'>{vcard(f'<DESC>{ok}</DESC>')}</iq>")
    assert reply.get("type") == "result"


async def test_avatar_flow(server: ServerProcess, connect: Any) -> None:
    # XEP-0153 §3.1/§3.2: publish the photo in the vCard, advertise its hash in presence (the
    # server passes the update element through untouched), the contact fetches the vCard.
    j, r = server.new_users(2)
    juliet = await connect(j)
    romeo = await connect(r)
    b64 = base64.b64encode(AVATAR).decode()
    photo = f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO>"
    assert (await juliet.query(f"<iq id='vc1' type='set'>{vcard(photo)}</iq>")).get("type") \
        == "result"
    sha1 = hashlib.sha1(AVATAR).hexdigest()
    await juliet.send_xml(f"<presence to='{romeo.boundjid.full}'><x xmlns='{V}:x:update'>"
                          f"<photo>{sha1}</photo></x></presence>")
    got = await romeo.expect(f"<presence from='{juliet.boundjid.full}'/>")
    update = got.find(f"{{{V}:x:update}}x")
    assert update is not None, ET.tostring(got)
    assert [c.tag for c in update] == [f"{{{V}:x:update}}photo"]
    assert update.findtext(f"{{{V}:x:update}}photo") == sha1
    reply = await romeo.query(f"<iq id='vc2' to='{j}' type='get'><vCard xmlns='{V}'/></iq>")
    binval = reply.findtext(f"{{{V}}}vCard/{{{V}}}PHOTO/{{{V}}}BINVAL")
    assert binval is not None
    assert hashlib.sha1(base64.b64decode(binval)).hexdigest() == sha1


async def test_empty_update_element_passes_through(server: ServerProcess, connect: Any) -> None:
    # XEP-0153 §4.1 rule 2: "not yet ready to advertise an image".
    j, r = server.new_users(2)
    juliet = await connect(j)
    romeo = await connect(r)
    await juliet.send_xml(f"<presence to='{romeo.boundjid.full}'>"
                          f"<x xmlns='{V}:x:update'/></presence>")
    got = await romeo.expect(f"<presence from='{juliet.boundjid.full}'/>")
    update = got.find(f"{{{V}:x:update}}x")
    assert update is not None and len(update) == 0
