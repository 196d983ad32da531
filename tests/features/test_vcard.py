"""XEP-0054 vcard-temp and XEP-0153 avatar bookkeeping, in memory (real router and storage)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import pytest

from blether.features.vcard import VCARD_UPDATED, VcardUpdated, decode_photo, dump, load
from blether.jid import JID
from blether.xml.element import Element
from features.services_kit import Kit, condition, xml

V = "vcard-temp"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PNG_B64 = base64.b64encode(PNG).decode()
JULIET = JID.parse("juliet@localhost")
ROMEO = JID.parse("romeo@localhost")


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await Kit.create(["vcard"], {"vcard": {"max_bytes": 2048,
                                               "server_vcard": {"FN": "Blether server"}}})
    yield k
    await k.close()


def juliet_vcard(extra: str = "") -> str:
    return (f"<vCard xmlns='{V}'><FN>Juliet Capulet</FN><N><GIVEN>Juliet</GIVEN>"
            f"<FAMILY>Capulet</FAMILY></N>{extra}</vCard>")


async def test_own_vcard_is_empty_before_any_is_published(kit: Kit) -> None:
    # XEP-0054 §3.1: "No vCard (empty element)", the variant ejabberd answers.
    juliet = await kit.login("juliet@localhost/balcony")
    reply = await kit.query(juliet, f"<iq id='v1' type='get'><vCard xmlns='{V}'/></iq>")
    assert reply.attrs["type"] == "result"
    vcard = reply.find("vCard", V)
    assert vcard is not None and vcard.children == []


async def test_publish_then_retrieve_own_vcard(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    reply = await kit.query(juliet, f"<iq id='v2' type='set'>{juliet_vcard()}</iq>")
    assert reply.attrs["type"] == "result" and reply.children == []
    reply = await kit.query(juliet, f"<iq id='v3' type='get'><vCard xmlns='{V}'/></iq>")
    assert reply.find("vCard", V) == xml(f"<iq>{juliet_vcard()}</iq>").find("vCard", V)


async def test_set_to_own_bare_jid_works_like_no_to(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    reply = await kit.query(juliet, f"<iq id='v2' type='set' to='juliet@localhost'>"
                                    f"{juliet_vcard()}</iq>")
    assert reply.attrs["type"] == "result"
    stored = await kit.s.storage.kv.get("juliet@localhost", "vcard", "vcard")
    assert stored is not None and "Juliet Capulet" in stored


async def test_the_whole_vcard_is_replaced(kit: Kit) -> None:
    # §3.2: "there is no method for partial updates".
    juliet = await kit.login("juliet@localhost/balcony")
    await kit.query(juliet, f"<iq id='a' type='set'>{juliet_vcard('<NICKNAME>J</NICKNAME>')}</iq>")
    await kit.query(juliet, f"<iq id='b' type='set'><vCard xmlns='{V}'><DESC>new</DESC></vCard>"
                            "</iq>")
    reply = await kit.query(juliet, f"<iq id='c' type='get'><vCard xmlns='{V}'/></iq>")
    vcard = reply.find("vCard", V)
    assert vcard is not None
    assert [c.name for c in vcard.elements()] == ["DESC"]


async def test_another_user_reads_the_vcard_from_the_server(kit: Kit) -> None:
    # §3.3: the server answers on behalf of the account, from its bare JID.
    juliet = await kit.login("juliet@localhost/balcony")
    romeo = await kit.login("romeo@localhost/orchard")
    await kit.query(juliet, f"<iq id='v2' type='set'>{juliet_vcard()}</iq>")
    reply = await kit.query(romeo, f"<iq id='v3' to='juliet@localhost' type='get'>"
                                   f"<vCard xmlns='{V}'/></iq>")
    assert reply.attrs["type"] == "result"
    assert reply.attrs["from"] == "juliet@localhost"
    assert reply.attrs["to"] == "romeo@localhost/orchard"
    vcard = reply.find("vCard", V)
    assert vcard is not None and vcard.find_text("FN", V) == "Juliet Capulet"
    assert juliet.take(lambda s: s.name == "iq") == []   # never forwarded to the client


async def test_no_vcard_and_no_account_give_the_same_error(kit: Kit) -> None:
    # §3.3 (1.3.0): service-unavailable in both cases, against directory harvesting.
    romeo = await kit.login("romeo@localhost/orchard")
    await kit.account("juliet@localhost")
    no_vcard = await kit.query(romeo, f"<iq id='a' to='juliet@localhost' type='get'>"
                                      f"<vCard xmlns='{V}'/></iq>")
    no_user = await kit.query(romeo, f"<iq id='b' to='nobody@localhost' type='get'>"
                                     f"<vCard xmlns='{V}'/></iq>")
    assert condition(no_vcard) == "service-unavailable"
    assert condition(no_user) == "service-unavailable"


async def test_setting_another_users_vcard_is_forbidden(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    romeo = await kit.login("romeo@localhost/orchard")
    await kit.query(juliet, f"<iq id='v2' type='set'>{juliet_vcard()}</iq>")
    reply = await kit.query(romeo, f"<iq id='v4' to='juliet@localhost' type='set'>"
                                   f"<vCard xmlns='{V}'><FN>Romeo</FN></vCard></iq>")
    assert condition(reply) == "forbidden"
    assert reply.find("error").attrs["type"] == "auth"  # type: ignore[union-attr]
    stored = await kit.s.storage.kv.get("juliet@localhost", "vcard", "vcard")
    assert stored is not None and "Romeo" not in stored


async def test_oversized_vcard_is_not_acceptable(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    big = "x" * 3000
    reply = await kit.query(juliet, f"<iq id='v5' type='set'>{juliet_vcard(f'<DESC>{big}</DESC>')}"
                                    "</iq>")
    assert condition(reply) == "not-acceptable"
    assert await kit.s.storage.kv.get("juliet@localhost", "vcard", "vcard") is None


async def test_empty_vcard_removes_it(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    romeo = await kit.login("romeo@localhost/orchard")
    await kit.query(juliet, f"<iq id='a' type='set'>{juliet_vcard()}</iq>")
    await kit.query(juliet, f"<iq id='b' type='set'><vCard xmlns='{V}'/></iq>")
    reply = await kit.query(romeo, f"<iq id='c' to='juliet@localhost' type='get'>"
                                   f"<vCard xmlns='{V}'/></iq>")
    assert condition(reply) == "service-unavailable"


async def test_server_vcard(kit: Kit) -> None:
    romeo = await kit.login("romeo@localhost/orchard")
    reply = await kit.query(romeo, f"<iq id='s' to='localhost' type='get'><vCard xmlns='{V}'/>"
                                   "</iq>")
    vcard = reply.find("vCard", V)
    assert vcard is not None and vcard.find_text("FN", V) == "Blether server"
    reply = await kit.query(romeo, f"<iq id='t' to='localhost' type='set'>"
                                   f"<vCard xmlns='{V}'><FN>x</FN></vCard></iq>")
    assert condition(reply) == "forbidden"


async def test_wrong_element_in_vcard_namespace_is_bad_request(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    reply = await kit.query(juliet, f"<iq id='w' type='set'><card xmlns='{V}'/></iq>")
    assert condition(reply) == "bad-request"


# -- XEP-0153 -----------------------------------------------------------------------------
async def test_photo_hash_is_recorded_and_announced(kit: Kit) -> None:
    seen: list[VcardUpdated] = []

    async def record(ev: VcardUpdated) -> None:
        seen.append(ev)

    kit.s.hooks.add(VCARD_UPDATED, record)
    juliet = await kit.login("juliet@localhost/balcony")
    # §4.5: line breaks inside BINVAL are ignored.
    wrapped = "\n".join(PNG_B64[i:i + 20] for i in range(0, len(PNG_B64), 20))
    photo = f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{wrapped}</BINVAL></PHOTO>"
    reply = await kit.query(juliet, f"<iq id='p' type='set'>{juliet_vcard(photo)}</iq>")
    assert reply.attrs["type"] == "result"
    sha1 = hashlib.sha1(PNG).hexdigest()
    vcard_module = kit.module("vcard")
    assert await vcard_module.photo_hash(JULIET) == sha1
    assert len(seen) == 1 and seen[0].origin == "client"
    assert seen[0].avatar is not None and seen[0].avatar.sha1 == sha1
    assert seen[0].avatar.mime_type == "image/png" and seen[0].avatar.data == PNG


async def test_vcard_without_photo_records_an_empty_hash(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    await kit.query(juliet, f"<iq id='p' type='set'>{juliet_vcard()}</iq>")
    assert await kit.module("vcard").photo_hash(JULIET) == ""
    assert await kit.module("vcard").photo_hash(ROMEO) is None


async def test_invalid_base64_photo_is_bad_request(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    photo = "<PHOTO><TYPE>image/png</TYPE><BINVAL>not*base64!</BINVAL></PHOTO>"
    reply = await kit.query(juliet, f"<iq id='p' type='set'>{juliet_vcard(photo)}</iq>")
    assert condition(reply) == "bad-request"


async def test_set_photo_hook_for_xep0398_keeps_the_rest(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    await kit.query(juliet, f"<iq id='a' type='set'>{juliet_vcard()}</iq>")
    seen: list[str] = []

    async def record(ev: VcardUpdated) -> None:
        seen.append(ev.origin)

    kit.s.hooks.add(VCARD_UPDATED, record)
    module = kit.module("vcard")
    await module.set_photo(JULIET, PNG, "image/png")
    vcard = await module.get_vcard(JULIET)
    assert vcard.find_text("FN", V) == "Juliet Capulet"
    avatar = decode_photo(vcard)
    assert avatar is not None and avatar.data == PNG
    assert seen == ["pep"]
    await module.set_photo(JULIET, None)
    vcard = await module.get_vcard(JULIET)
    assert vcard.find("PHOTO", V) is None
    assert await module.photo_hash(JULIET) == ""


async def test_account_purge_removes_the_vcard(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    await kit.query(juliet, f"<iq id='a' type='set'>{juliet_vcard()}</iq>")
    await kit.s.storage.purge_user("juliet@localhost")
    assert await kit.s.storage.kv.keys("juliet@localhost", "vcard") == []


def test_dump_load_round_trip() -> None:
    el = xml(f"<iq>{juliet_vcard('<DESC>a &amp; b &lt;c&gt;</DESC>')}</iq>").find("vCard", V)
    assert isinstance(el, Element)
    assert load(dump(el)) == el
