"""XEP-0004: Data Forms — building forms and reading submitted ones, nothing more.

Used by the ad-hoc commands (XEP-0050/XEP-0133) and by in-band registration (XEP-0077 §5).
"""

from __future__ import annotations

from dataclasses import dataclass

from blether import ns
from blether.xml.element import Element


@dataclass(frozen=True, slots=True)
class Field:
    var: str
    type: str = "text-single"
    label: str = ""
    values: tuple[str, ...] = ()
    required: bool = False

    def to_element(self) -> Element:
        attrs = {"var": self.var}
        if self.type:
            attrs["type"] = self.type
        if self.label:
            attrs["label"] = self.label
        el = Element("field", ns.DATA_FORMS, attrs)
        if self.required:
            el.append(Element("required", ns.DATA_FORMS))
        for value in self.values:
            el.append(Element("value", ns.DATA_FORMS, None, [value]))
        return el


def hidden_form_type(form_type: str) -> Field:
    """XEP-0068 FORM_TYPE field."""
    return Field("FORM_TYPE", "hidden", values=(form_type,))


def build(form_type: str, fields: list[Field], *, title: str = "",
          instructions: str = "") -> Element:
    """An `<x xmlns='jabber:x:data' type=form_type>` with the given fields (§3.1)."""
    x = Element("x", ns.DATA_FORMS, {"type": form_type})
    if title:
        x.append(Element("title", ns.DATA_FORMS, None, [title]))
    if instructions:
        x.append(Element("instructions", ns.DATA_FORMS, None, [instructions]))
    for field in fields:
        x.append(field.to_element())
    return x


def find(parent: Element) -> Element | None:
    """The first data form among `parent`'s children."""
    return parent.find("x", ns.DATA_FORMS)


def values(x: Element) -> dict[str, list[str]]:
    """Submitted values by field var (§3.3); a field without <value/> maps to []."""
    out: dict[str, list[str]] = {}
    for field in x.find_all("field", ns.DATA_FORMS):
        var = field.attrs.get("var")
        if var:
            out[var] = [v.text for v in field.find_all("value", ns.DATA_FORMS)]
    return out


def single(vals: dict[str, list[str]], var: str) -> str:
    """The first value of a single-valued field, stripped ("" when absent)."""
    got = vals.get(var)
    return got[0].strip() if got else ""
