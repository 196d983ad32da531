"""Element: lookups, building, copies and value semantics."""

import pytest

from blether.xml.element import E, Element

C = "jabber:client"
X = "urn:example:x"


def _message() -> Element:
    return E(
        "message",
        C,
        {"to": "juliet@example.com", "type": "chat"},
        E("body", C, None, "hello"),
        "tail",
        E("x", X, {"a": "1"}, E("item", X)),
        E("body", C, {"xml:lang": "fr"}, "bonjour"),
    )


def test_defaults_are_fresh_containers() -> None:
    a, b = Element("a", C), Element("a", C)
    assert a.attrs == {} and a.children == []
    a.attrs["k"] = "v"
    a.children.append("t")
    assert b.attrs == {} and b.children == []


def test_slots_only() -> None:
    el = Element("a", C)
    with pytest.raises(AttributeError):
        el.other = 1  # type: ignore[attr-defined]


def test_get() -> None:
    m = _message()
    assert m.get("to") == "juliet@example.com"
    assert m.get("from") is None
    assert m.get("from", "x") == "x"


def test_find_and_find_all() -> None:
    m = _message()
    body = m.find("body")
    assert body is not None and body.text == "hello"
    assert m.find("body", C) is body
    assert m.find("body", X) is None
    assert m.find("item") is None  # only direct children
    x = m.find("x", X)
    assert x is not None and x.get("a") == "1"
    assert [b.text for b in m.find_all("body")] == ["hello", "bonjour"]
    assert m.find_all(xmlns=X) == [x]
    assert len(m.find_all()) == 3


def test_elements_skips_text() -> None:
    m = _message()
    assert [e.name for e in m.elements()] == ["body", "x", "body"]


def test_text_is_direct_text_only() -> None:
    m = _message()
    assert m.text == "tail"
    assert E("a", C, None, "x", E("b", C, None, "inner"), "y").text == "xy"
    assert Element("a", C).text == ""


def test_find_text() -> None:
    m = _message()
    assert m.find_text("body") == "hello"
    assert m.find_text("body", X) is None
    assert m.find_text("x", X) == ""


def test_append_returns_child() -> None:
    el = Element("a", C)
    child = Element("b", C)
    assert el.append(child) is child
    assert el.append("text") == "text"
    assert el.children == [child, "text"]
    el.append(Element("c", C)).append(Element("d", C))  # typed: append(Element) -> Element
    assert el.find_all("c")[0].elements() == [Element("d", C)]


def test_copy_is_deep() -> None:
    m = _message()
    c = m.copy()
    assert c == m and c is not m
    c.attrs["to"] = "romeo@example.net"
    body = c.find("body")
    assert body is not None
    body.children[0] = "changed"
    x = c.find("x", X)
    assert x is not None
    x.attrs["a"] = "2"
    assert m == _message()


def test_with_attrs_is_a_new_value() -> None:
    m = _message()
    stamped = m.with_attrs(from_="romeo@example.net/orchard", type=None)
    assert stamped is not m
    assert stamped.attrs == {"to": "juliet@example.com", "from": "romeo@example.net/orchard"}
    assert m.attrs == {"to": "juliet@example.com", "type": "chat"}
    assert stamped.children is m.children  # shared: stanzas are values while routed
    assert stamped.name == "message" and stamped.xmlns == C


def test_with_attrs_mapping_and_missing_delete() -> None:
    m = _message()
    out = m.with_attrs({"from": "a@b", "xml:lang": "en", "nope": None})
    assert out.attrs == {"to": "juliet@example.com", "type": "chat", "from": "a@b",
                         "xml:lang": "en"}


def test_equality_is_structural() -> None:
    assert _message() == _message()
    assert Element("a", C) != Element("a", X)
    assert Element("a", C) != Element("b", C)
    assert Element("a", C, {"k": "1"}) != Element("a", C, {"k": "2"})
    assert E("a", C, None, "x") != E("a", C, None, "y")
    assert E("a", C, None, E("b", C)) != E("a", C, None, E("b", X))
    assert Element("a", C) != "a"
    assert (Element("a", C) == object()) is False


def test_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Element("a", C))


def test_repr_shows_xml_with_own_namespace() -> None:
    el = E("message", C, {"to": "a@b"}, E("body", C, None, "1 < 2"))
    assert repr(el) == "<message xmlns='jabber:client' to='a@b'><body>1 &lt; 2</body></message>"


def test_e_helper() -> None:
    el = E("iq", C, {"type": "get"}, E("ping", "urn:xmpp:ping"))
    assert el == Element("iq", C, {"type": "get"}, [Element("ping", "urn:xmpp:ping")])
    assert E("a", C) == Element("a", C)
