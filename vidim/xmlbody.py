"""What vidim's XML bodies (resource lists, conference-info) share: safe parsing, text rules.

These bodies come from the network, so the parser refuses what XML allows
but vidim never needs: DTDs and entity declarations (billion laughs,
external entities), oversize bodies and absurd nesting.  It builds an
:class:`xml.etree.ElementTree.Element` tree with ``{namespace}local`` names,
like ElementTree does, on top of expat with those hooks set.

Both formats carry SIP URIs, display names and vidim's ``vidim:mode``, and
their text may end up in a SIP header or a log line; the checks below are
the one place that says what may pass, in each direction: what vidim would
write is refused with :class:`LocalProtocolError`, what a peer sent with
:class:`FormatError` (400).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import NoReturn
from xml.parsers import expat

from .sip.errors import LocalProtocolError, RemoteProtocolError, SIPParseError
from .sip.uri import parse_uri
from .vocabulary import Mode

__all__ = [
    "DEFAULT_MAX_XML_SIZE",
    "MAX_XML_DEPTH",
    "VIDIM_NS",
    "FormatError",
    "check_xml_text",
    "checked_uri",
    "collapse_space",
    "parse_xml",
    "read_mode",
    "read_name",
    "read_text",
    "read_uri",
    "serialize",
]

#: vidim's own XML namespace: the ``vidim:mode`` and ``vidim:key`` attributes
#: it adds to resource lists and conference-info documents.  Not a registered
#: URN namespace: it only has to be unique, and readers match it exactly.
VIDIM_NS = "urn:vidim:params:xml:ns:conference"

#: Bodies larger than this are refused before parsing (64 KiB).
DEFAULT_MAX_XML_SIZE = 64 * 1024
#: Deeper element nesting is refused: no vidim format goes beyond a handful.
MAX_XML_DEPTH = 32

# Characters that XML 1.0 cannot carry at all, plus the C0/C1 controls that
# must not reach a SIP header or a log line (CR and LF included).
_BAD_TEXT_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

_XML_SPACE_RE = re.compile(r"[ \t\r\n]+")


class FormatError(RemoteProtocolError):
    """A body that is not the XML document it claims to be; status_hint 400."""

    def __init__(self, reason: str, *, status_hint: int = 400) -> None:
        super().__init__(reason, status_hint=status_hint)


def _refuse(reason: str) -> NoReturn:
    raise FormatError(reason)


def parse_xml(body: bytes, *, max_size: int = DEFAULT_MAX_XML_SIZE) -> ET.Element:
    """Parse ``body`` into an element tree, refusing DTDs, entities and oversize input."""
    if len(body) > max_size:
        raise FormatError(f"XML body of {len(body)} bytes exceeds the limit of {max_size}")
    builder = ET.TreeBuilder()
    depth = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            _refuse(f"XML nested deeper than {MAX_XML_DEPTH} elements")
        builder.start(_clark(name), {_clark(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_clark(name))

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = lambda *_: _refuse("XML with a DTD is not accepted")
    parser.EntityDeclHandler = lambda *_: _refuse("XML entity declarations are not accepted")
    parser.UnparsedEntityDeclHandler = lambda *_: _refuse("XML entities are not accepted")
    parser.ExternalEntityRefHandler = lambda *_: _refuse("external XML entities are not accepted")
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise FormatError(f"malformed XML: {expat.ErrorString(exc.code)}") from exc
    root = builder.close()
    if root is None:  # pragma: no cover - expat refuses a document without a root
        raise FormatError("empty XML document")
    return root


def _clark(name: str) -> str:
    """expat's ``"uri local"`` to ElementTree's ``"{uri}local"``."""
    uri, sep, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if sep else name


def check_xml_text(value: str, what: str) -> str:
    """Refuse (LocalProtocolError) text that XML cannot carry or a header must not get."""
    if _BAD_TEXT_RE.search(value):
        raise LocalProtocolError(f"{what} contains control or non-XML characters: {value!r}")
    return value


def collapse_space(text: str) -> str:
    """XML whitespace runs (pretty-printing) to one space, trimmed: how names are read."""
    return _XML_SPACE_RE.sub(" ", text).strip()


def checked_uri(uri: str, what: str) -> str:
    """``uri`` if vidim may write it into a document: a SIP URI with no control characters."""
    try:
        parse_uri(check_xml_text(uri, what))
    except SIPParseError as exc:
        raise LocalProtocolError(f"bad {what} {uri!r}: {exc.reason}") from exc
    return uri


def read_text(value: str, what: str) -> str:
    """Text a peer sent, as :func:`check_xml_text` allows it, else :class:`FormatError`."""
    try:
        return check_xml_text(value, what)
    except LocalProtocolError as exc:
        raise FormatError(exc.reason) from None


def read_name(value: str, what: str) -> str:
    """A name or other element text a peer sent: XML whitespace collapsed, then checked."""
    return read_text(collapse_space(value), what)


def read_uri(value: str, what: str) -> str:
    """A SIP URI a peer sent, else :class:`FormatError`."""
    try:
        parse_uri(value)
    except SIPParseError as exc:
        raise FormatError(f"bad {what} {value!r}: {exc.reason}") from exc
    return value


def read_mode(text: str, whose: str) -> Mode:
    """A ``vidim:mode`` value a peer sent (case and padding ignored), else :class:`FormatError`."""
    try:
        return Mode(text.strip().lower())
    except ValueError:
        raise FormatError(f"unknown mode {text!r} for {whose}") from None


def serialize(root: ET.Element) -> bytes:
    """UTF-8 bytes with an XML declaration; ElementTree escapes ``<&"`` itself."""
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data
