"""XMPP addresses (JIDs) per RFC 7622, prepared and enforced exactly once.

A JID is ``[ localpart "@" ] domainpart [ "/" resourcepart ]`` (RFC 7622 §3.1).

Splitting (RFC 7622 §3.1 implementation note, §3.2, §3.3, §3.4) happens on the
*raw* text, before any mapping, because mappings can turn other code points into
separators (FULLWIDTH COMMERCIAL AT U+FF20 becomes "@"):

* resourcepart: everything after the first "/" -- it may itself hold "/" and "@";
* localpart: everything before the first "@" in what precedes that first "/";
* domainpart: what remains.

Each part present must be 1..1023 octets of UTF-8 *after* preparation (§3.1), so
``@example.com``, ``user@``, ``user@example.com/`` and ``/res`` are all malformed.

Domainpart (§3.2, §3.2.1 preparation, §3.2.2 enforcement):

* one trailing "." (the DNS root label separator) is stripped before anything else;
* an IP literal is allowed: dotted-quad IPv4, or IPv6 in brackets (``[::1]``),
  validated with :mod:`ipaddress` and stored in its canonical compressed form
  (IPv4-mapped IPv6 always as ``::ffff:a.b.c.d``, whatever the Python version);
  zone identifiers (``%eth0``) and IPvFuture literals are refused;
* otherwise the UTS #46 mapping (case folding, width mapping, NFC -- the
  RFC 5895-style mapping §3.2.2 asks for) is applied with the STD3 ASCII rules,
  so underscores, spaces and other junk are refused; every label is then checked
  as an IDNA2008 label with the ``idna`` package (A-labels are decoded and must be
  canonical Punycode);
* the domainpart is **stored as U-labels** (lowercase Unicode), because §3.2.1
  says every A-label MUST be converted to a U-label when preparing a domainpart.
  ``xn--mller-kva.example`` and ``Müller.Example`` therefore give the same JID,
  whose text is ``müller.example``.  Use :func:`domain_to_ascii` for DNS;
* each label must be at most 63 octets in its A-label (DNS) form, the whole
  domainpart at most 1023 octets as stored (§3.1).  Note this is the RFC 7622
  limit, not the DNS 253-octet limit: a JID domainpart need not be resolvable;
* a domainpart whose last label is numeric (all digits, or ``0x`` + hex, the
  WHATWG "ends in a number" test) must be a valid dotted-quad IPv4 address.
  This refuses ``1.2.3``, ``01.2.3.4`` or ``example.0x7f``, which
  ``inet_aton``-style resolvers would silently turn into IP addresses.

Localpart (§3.3, §3.3.1, §3.3.2): the PRECIS IdentifierClass profile
**UsernameCaseMapped** (RFC 7613, now RFC 8265: width mapping, lowercase,
NFC, Bidi rule) via ``precis_i18n``, then the XMPP-excluded characters
``" & ' / : < > @`` are refused -- checked after the mapping, so a fullwidth
"@" cannot sneak in.  Compatibility characters such as the superscript letters
of ``ᴮᴵᴳᴮᴵᴿᴰ`` are DISALLOWED by the IdentifierClass (no NFKC, unlike
nodeprep), which is what closes the Spotify-style account takeover
(SECURITY.md point 8): the only many-to-one mappings are the profile's own
(width, case, NFC), and they are idempotent.

Resourcepart (§3.4, §3.4.1, §3.4.2): the PRECIS FreeformClass profile
**OpaqueString** (RFC 8265): case preserved, non-ASCII spaces mapped to
U+0020, NFC.  Spaces, "@" and "/" are allowed.  RFC 7622 §3.5 lists
``juliet@example.com/ foo`` (example 18) as invalid, but no rule of the
OpaqueString profile forbids a leading space; we follow the profile and
accept it.

Comparison (§3.2.3, §3.3.3, §3.4.3) is on the prepared parts only.  The
canonical text ``local@domain/resource`` is injective (a prepared localpart and
domainpart never contain "@" or "/"), so equality and hashing use it.

Preparation is idempotent: ``JID.parse(str(j)) == j`` for every JID ``j``.
precis_i18n checks idempotence of the PRECIS rules itself; the domainpart
is checked here (a result UTS #46 would map again is refused).

Parsing is on every stanza's hot path, so :meth:`JID.parse` keeps an LRU cache
of results (including refusals) for inputs up to 128 characters, and pure-ASCII
localparts and resourceparts skip ``precis_i18n`` when the result provably
equals the profile's (see :func:`_prep_local` and :func:`_prep_resource`).
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, NoReturn, final

import idna
from precis_i18n import get_profile

__all__ = [
    "JID",
    "JIDError",
    "domain_to_ascii",
    "prep_domain",
    "prep_local",
    "prep_resource",
]


class JIDError(ValueError):
    """A malformed JID; maps to the stanza error ``<jid-malformed/>``.

    The message names the part (localpart, domainpart, resourcepart) and the reason.
    It never repeats the offending text (which may be long or hostile), only code points.
    """


# RFC 7622 §3.1: every part is 1..1023 octets after preparation.
MAX_PART_OCTETS: Final = 1023
# Before preparation a part can be longer than after it (width mapping turns a
# 3-octet fullwidth letter into 1 octet, NFC composes a base and its marks).  Each
# prepared code point stands for at most 4 input code points (the longest canonical
# decomposition; no profile here deletes characters), so a part longer than this
# many code points cannot prepare to <= 1023 octets: refuse it before paying for
# PRECIS.  (For the domainpart, idna adds its own bound of 1024 code points.)
_MAX_RAW_CHARS: Final = 4 * MAX_PART_OCTETS
# Label length in DNS (RFC 1035 §2.3.4), counted on the A-label.
_MAX_LABEL_OCTETS: Final = 63
# XMPP-excluded characters for the localpart (RFC 7622 §3.3.1).
_LOCAL_EXCLUDED: Final = frozenset("\"&'/:<>@")

_LOCAL_PROFILE: Final = get_profile("UsernameCaseMapped")
_RESOURCE_PROFILE: Final = get_profile("OpaqueString")

# Fast paths.  For printable ASCII both profiles act code point by code point:
# no width mapping applies (nothing in U+0021..U+007E has a <wide>/<narrow>
# decomposition), case mapping is ASCII lower(), NFC leaves ASCII unchanged, and
# the Bidi rule only applies when a right-to-left character is present.  So the
# results below equal the profiles' output; tests check every ASCII code point
# exhaustively and random strings with hypothesis.
#  - localpart: IdentifierClass allows U+0021..U+007E (the RFC 8264 ASCII7 category)
#    minus the XMPP-excluded characters; result is text.lower().
#  - resourcepart: FreeformClass allows U+0020..U+007E; result is the text itself.
_LOCAL_FAST: Final = re.compile(r"[!#-%(-.0-9;=?A-~]{1,1023}")
_RESOURCE_FAST: Final = re.compile(r"[ -~]{1,1023}")

_IPV4_SHAPE: Final = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def _fail(part: str, reason: str) -> NoReturn:
    raise JIDError(f"{part}: {reason}")


def _describe_precis_error(exc: UnicodeError) -> str:
    reason = getattr(exc, "reason", "") or str(exc)
    if reason == "DISALLOWED/empty":
        return "empty after preparation"
    obj = getattr(exc, "object", None)
    start = getattr(exc, "start", -1)
    if isinstance(obj, str) and 0 <= start < len(obj):
        return f"{reason} character U+{ord(obj[start]):04X} at offset {start}"
    return reason


def _check_octets(part: str, value: str) -> None:
    if not value:
        _fail(part, "empty")
    if len(value) > MAX_PART_OCTETS or (
        not value.isascii() and len(value.encode("utf-8")) > MAX_PART_OCTETS
    ):
        _fail(part, f"longer than {MAX_PART_OCTETS} octets")


# --------------------------------------------------------------------------- localpart


def _prep_local_slow(text: str) -> str:
    """UsernameCaseMapped + XMPP exclusions, always through precis_i18n."""
    if not text:
        _fail("localpart", "empty")
    if len(text) > _MAX_RAW_CHARS:
        _fail("localpart", f"longer than {MAX_PART_OCTETS} octets")
    try:
        prepared: str = _LOCAL_PROFILE.enforce(text)
    except UnicodeError as exc:
        _fail("localpart", _describe_precis_error(exc))
    for offset, char in enumerate(prepared):
        if char in _LOCAL_EXCLUDED:
            _fail("localpart", f"excluded character U+{ord(char):04X} at offset {offset}")
    _check_octets("localpart", prepared)
    return prepared


_local_fast = _LOCAL_FAST.fullmatch
_resource_fast = _RESOURCE_FAST.fullmatch


def _prep_local(text: str) -> str:
    if _local_fast(text) is not None:
        return text.lower()
    return _prep_local_slow(text)


def prep_local(text: str) -> str:
    """Prepare and enforce a localpart (RFC 7622 §3.3); raises :class:`JIDError`."""
    return _prep_local(text)


# ------------------------------------------------------------------------ resourcepart


def _prep_resource_slow(text: str) -> str:
    """OpaqueString, always through precis_i18n."""
    if not text:
        _fail("resourcepart", "empty")
    if len(text) > _MAX_RAW_CHARS:
        _fail("resourcepart", f"longer than {MAX_PART_OCTETS} octets")
    try:
        prepared: str = _RESOURCE_PROFILE.enforce(text)
    except UnicodeError as exc:
        _fail("resourcepart", _describe_precis_error(exc))
    _check_octets("resourcepart", prepared)
    return prepared


def _prep_resource(text: str) -> str:
    if _resource_fast(text) is not None:
        return text
    return _prep_resource_slow(text)


def prep_resource(text: str) -> str:
    """Prepare and enforce a resourcepart (RFC 7622 §3.4); raises :class:`JIDError`."""
    return _prep_resource(text)


# -------------------------------------------------------------------------- domainpart


def _canonical_ipv6(address: ipaddress.IPv6Address) -> str:
    mapped = address.ipv4_mapped
    if mapped is not None:
        # Python 3.13 changed str() of these; pin one spelling.
        return f"[::ffff:{mapped}]"
    return f"[{address.compressed}]"


def _prep_ip_literal(text: str) -> str:
    inner = text[1:-1]
    if not text.endswith("]") or not inner:
        _fail("domainpart", "malformed IP literal")
    if "%" in inner:
        _fail("domainpart", "IPv6 zone identifiers are not allowed")
    try:
        address = ipaddress.IPv6Address(inner)
    except ValueError:
        _fail("domainpart", "malformed IPv6 literal")
    return _canonical_ipv6(address)


def _prep_domain_uncached(text: str) -> str:
    if text.endswith("."):
        text = text[:-1]  # RFC 7622 §3.2: strip one trailing dot, before anything else
    if not text:
        _fail("domainpart", "empty")
    if text.startswith("["):
        return _prep_ip_literal(text)
    if len(text) > _MAX_RAW_CHARS:
        _fail("domainpart", f"longer than {MAX_PART_OCTETS} octets")
    try:
        mapped = idna.uts46_remap(text, std3_rules=True)
    except (idna.IDNAError, ValueError) as exc:
        _fail("domainpart", _describe_idna_error(exc))

    labels = mapped.split(".")
    if _IPV4_SHAPE.fullmatch(labels[-1]) is not None:
        try:
            return str(ipaddress.IPv4Address(mapped))
        except ValueError:
            _fail("domainpart", "numeric domainpart is not a dotted-quad IPv4 address")

    ulabels = []
    for index, label in enumerate(labels):
        if not label:
            _fail("domainpart", f"empty label at position {index}")
        try:
            ulabel = idna.ulabel(label)
        except (idna.IDNAError, ValueError) as exc:
            _fail("domainpart", f"label {index}: {_describe_idna_error(exc)}")
        alabel = _to_alabel(ulabel)
        if label.startswith("xn--") and alabel != label:
            # RFC 5891 §5.3; newer idna releases check this too, older ones do not.
            _fail("domainpart", f"label {index} is not a canonical A-label")
        if len(alabel) > _MAX_LABEL_OCTETS:
            _fail("domainpart", f"label {index} longer than {_MAX_LABEL_OCTETS} octets")
        ulabels.append(ulabel)
    prepared = ".".join(ulabels)
    _check_octets("domainpart", prepared)
    # Idempotence guard: the stored form must be a fixed point of the mapping.
    try:
        stable = idna.uts46_remap(prepared, std3_rules=True) == prepared
    except (idna.IDNAError, ValueError):
        stable = False
    if not stable:
        _fail("domainpart", "not stable under re-preparation")
    return prepared


def _to_alabel(ulabel: str) -> str:
    if ulabel.isascii():
        return ulabel
    return "xn--" + ulabel.encode("punycode").decode("ascii")


def _describe_idna_error(exc: Exception) -> str:
    codepoint = getattr(exc, "codepoint", None)
    code = getattr(exc, "code", None) or "invalid"
    if isinstance(codepoint, int):
        return f"{code} character U+{codepoint:04X}"
    return str(code)


_CACHEABLE_CHARS: Final = 128
_prep_domain_cached = lru_cache(maxsize=4096)(_prep_domain_uncached)


def _prep_domain(text: str) -> str:
    if len(text) <= _CACHEABLE_CHARS:
        return _prep_domain_cached(text)
    return _prep_domain_uncached(text)


def prep_domain(text: str) -> str:
    """Prepare and enforce a domainpart (RFC 7622 §3.2); raises :class:`JIDError`.

    Returns the lowercase U-label form (or a canonical IP literal).
    """
    return _prep_domain(text)


def domain_to_ascii(domain: str) -> str:
    """The A-label (Punycode) form of a *prepared* domainpart, for DNS and TLS name checks."""
    if domain.isascii():
        return domain
    return ".".join(_to_alabel(label) for label in domain.split("."))


# --------------------------------------------------------------------------------- JID

_new = object.__new__
_set = object.__setattr__


@final
class JID:
    """An immutable, hashable, prepared XMPP address.

    Every instance holds prepared parts: ``JID(local, domain, resource)`` prepares
    like :meth:`from_parts`; :meth:`parse` splits and prepares text.  Equality and
    hashing are on the prepared parts.  Not orderable.
    """

    __slots__ = ("_bare", "_hash", "_str", "domain", "local", "resource")
    __match_args__ = ("local", "domain", "resource")

    if TYPE_CHECKING:
        # Read-only for type checkers, as with a frozen dataclass; at run time these
        # are plain slots, and __setattr__ refuses writes.
        @property
        def local(self) -> str | None:
            """Prepared localpart, ``None`` if absent."""
            raise NotImplementedError

        @property
        def domain(self) -> str:
            """Prepared domainpart (U-labels, or a canonical IP literal)."""
            raise NotImplementedError

        @property
        def resource(self) -> str | None:
            """Prepared resourcepart, ``None`` if absent."""
            raise NotImplementedError

    _str: str
    _hash: int
    _bare: JID | None

    def __init__(self, local: str | None, domain: str, resource: str | None = None) -> None:
        _init(
            self,
            None if local is None else _prep_local(local),
            _prep_domain(domain),
            None if resource is None else _prep_resource(resource),
        )

    # -- constructors

    @classmethod
    def parse(cls, text: str) -> JID:
        """Split and prepare ``text`` (RFC 7622); raises :class:`JIDError`.  Cached."""
        result = _parse_cached(text) if len(text) <= _CACHEABLE_CHARS else _parse_text(text)
        if isinstance(result, str):
            raise JIDError(result)
        return result

    @classmethod
    def from_parts(cls, local: str | None, domain: str, resource: str | None) -> JID:
        """Prepare each part; ``None`` means absent, ``""`` is malformed."""
        return cls(local, domain, resource)

    # -- views

    @property
    def bare(self) -> JID:
        """The JID without its resourcepart (``self`` if already bare)."""
        if self.resource is None:
            return self
        bare = self._bare
        if bare is None:
            bare = _make(self.local, self.domain, None)
            _set(self, "_bare", bare)
        return bare

    @property
    def is_bare(self) -> bool:
        """No resourcepart."""
        return self.resource is None

    @property
    def is_domain(self) -> bool:
        """No localpart and no resourcepart."""
        return self.local is None and self.resource is None

    def with_resource(self, resource: str | None) -> JID:
        """The same bare JID with ``resource`` (prepared); ``None`` gives :attr:`bare`."""
        if resource is None:
            return self.bare
        return _make(self.local, self.domain, _prep_resource(resource))

    # -- value semantics

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"JID({self._str!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JID):
            return self._str == other._str
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, JID):
            return self._str != other._str
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"JID is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"JID is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (JID.parse, (self._str,))

    def __copy__(self) -> JID:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> JID:
        return self


def _init(
    obj: JID, local: str | None, domain: str, resource: str | None, original: str | None = None
) -> None:
    """Fill the slots of ``obj`` from already-prepared parts.

    ``original`` is the parsed text: when it is already canonical it is kept as the
    canonical string, so a cached entry holds one copy of the text, not two.
    """
    text = domain if local is None else f"{local}@{domain}"
    if resource is not None:
        text = f"{text}/{resource}"
    if original is not None and original == text:
        text = original
    _set(obj, "local", local)
    _set(obj, "domain", domain)
    _set(obj, "resource", resource)
    _set(obj, "_str", text)
    _set(obj, "_hash", hash(text))
    _set(obj, "_bare", None)  # filled lazily by .bare; never a self-reference (no GC cycle)


def _make(local: str | None, domain: str, resource: str | None, original: str | None = None) -> JID:
    obj: JID = _new(JID)
    _init(obj, local, domain, resource, original)
    return obj


def _parse_text(text: str) -> JID | str:
    """Parse ``text``; return the JID, or the error message (so refusals can be cached)."""
    try:
        slash = text.find("/")
        if slash >= 0:
            head = text[:slash]
            resource: str | None = _prep_resource(text[slash + 1 :])
        else:
            head = text
            resource = None
        at = head.find("@")
        if at >= 0:
            local: str | None = _prep_local(head[:at])
            domain = _prep_domain(head[at + 1 :])
        else:
            local = None
            domain = _prep_domain(head)
    except JIDError as exc:
        return str(exc)
    return _make(local, domain, resource, text)


# Keys are capped at _CACHEABLE_CHARS (128) characters -- every realistic address,
# MUC occupant JIDs included -- so that a client sending distinct hostile addresses
# cannot grow the cache without bound: a full cache measured ~25 MiB with ordinary
# addresses and ~55 MiB with every key a 128-character non-ASCII JID.  Longer inputs
# are prepared every time (a few µs with the ASCII fast paths).
_parse_cached = lru_cache(maxsize=65536)(_parse_text)
