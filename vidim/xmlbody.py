"""Safe parsing of the XML bodies peers send (resource lists, conference-info).

These bodies come from the network, so the parser refuses what XML allows
but vidim never needs: DTDs and entity declarations (billion laughs,
external entities), oversize bodies and absurd nesting.  It builds an
:class:`xml.etree.ElementTree.Element` tree with ``{namespace}local`` names,
like ElementTree does, on top of expat with those hooks set.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import NoReturn
from xml.parsers import expat

from .sip.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_XML_SIZE",
    "MAX_XML_DEPTH",
    "VIDIM_NS",
    "FormatError",
    "check_xml_text",
    "collapse_space",
    "parse_xml",
    "serialize",
]

#: vidim's own XML namespace: the ``vidim:mode`` and ``vidim:key`` attributes
#: it adds to resource lists and conference-info documents.
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


def serialize(root: ET.Element) -> bytes:
    """UTF-8 bytes with an XML declaration; ElementTree escapes ``<&"`` itself."""
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data
