"""Resource lists (RFC 4826) as RFC 5365/5366 requests carry them, with vidim's modes.

The allocator reads them from RFC 5365 MESSAGEs and writes them into the
focus INVITE (RFC 5366); the built-in focus reads them to know who it may
admit.  Each invitee's mode and join credential ride on ``<entry>`` as
attributes in vidim's own namespace (:data:`VIDIM_NS`), which the RFC 4826
schema allows (``anyAttribute namespace="##other"``), so any conformant
reader still sees a plain list of URIs::

    <resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"
                    xmlns:vidim="urn:vidim:params:xml:ns:conference">
      <list>
        <entry uri="sip:bob@example.com" vidim:mode="video" vidim:key="...">
          <display-name>Bob</display-name>
        </entry>
      </list>
    </resource-lists>

RFC 5364's ``copyControl`` (and ``anonymize``) attributes are accepted and
ignored: every invitee learns of the conference by its own IM.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from . import xmlbody
from .vocabulary import Mode
from .xmlbody import VIDIM_NS, FormatError

__all__ = [
    "CONTENT_TYPE",
    "RESOURCE_LISTS_NS",
    "RESOURCE_LISTS_TYPE",
    "VIDIM_NS",
    "FormatError",
    "ListEntry",
    "build_resource_list",
    "parse_resource_list",
]

RESOURCE_LISTS_TYPE = "application/resource-lists+xml"
CONTENT_TYPE = RESOURCE_LISTS_TYPE
RESOURCE_LISTS_NS = "urn:ietf:params:xml:ns:resource-lists"

_RL = f"{{{RESOURCE_LISTS_NS}}}"
_MODE = f"{{{VIDIM_NS}}}mode"
_KEY = f"{{{VIDIM_NS}}}key"
#: Nested lists are flattened; bound the number of entries a body may name.
MAX_ENTRIES = 256


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One invitee: where to reach it and, optionally, its mode and join credential."""

    uri: str
    display_name: str | None = None
    mode: Mode | None = None
    #: The per-invitee join credential the focus checks; ``None`` in requests.
    credential: str | None = None


def build_resource_list(entries: Sequence[ListEntry]) -> bytes:
    """Serialize ``entries`` as one ``<list>``; text is escaped, control characters refused.

    Parsing gives back equal entries, except that display names come back
    with runs of spaces collapsed and trimmed (pretty-printed XML is read so).
    """
    root = ET.Element("resource-lists", {"xmlns": RESOURCE_LISTS_NS, "xmlns:vidim": VIDIM_NS})
    lst = ET.SubElement(root, "list")
    for entry in entries:
        attrs = {"uri": xmlbody.checked_uri(entry.uri, "entry URI")}
        if entry.mode is not None:
            attrs["vidim:mode"] = str(entry.mode)
        if entry.credential is not None:
            attrs["vidim:key"] = xmlbody.check_xml_text(entry.credential, "credential")
        element = ET.SubElement(lst, "entry", attrs)
        if entry.display_name is not None:
            name = ET.SubElement(element, "display-name")
            name.text = xmlbody.check_xml_text(entry.display_name, "display name")
    return xmlbody.serialize(root)


def parse_resource_list(
    body: bytes, *, max_size: int = xmlbody.DEFAULT_MAX_XML_SIZE
) -> list[ListEntry]:
    """The entries of a resource-lists document, nested lists flattened in document order.

    Raises :class:`FormatError` (400) for anything but a well-formed, DTD-free
    ``resource-lists`` document whose entries have valid URIs and known modes.
    ``entry-ref`` and ``external`` (references to lists stored elsewhere) are
    refused rather than silently dropped: nobody would be invited.
    """
    root = xmlbody.parse_xml(body, max_size=max_size)
    if root.tag != _RL + "resource-lists":
        raise FormatError(f"expected <resource-lists> in {RESOURCE_LISTS_NS}, got {root.tag}")
    entries: list[ListEntry] = []
    for element in root.iter():
        if element.tag in (_RL + "entry-ref", _RL + "external"):
            raise FormatError(f"<{element.tag.removeprefix(_RL)}> references are not supported")
        if element.tag != _RL + "entry":
            continue
        entries.append(_entry(element))
        if len(entries) > MAX_ENTRIES:
            raise FormatError(f"more than {MAX_ENTRIES} entries in the resource list")
    return entries


def _entry(element: ET.Element) -> ListEntry:
    raw = element.get("uri", "")
    # xs:anyURI is whitespace-collapsed by XML Schema: tolerate padding.
    uri = raw.strip(" \t\r\n")
    if not uri:
        raise FormatError("<entry> without a uri attribute")
    xmlbody.read_text(raw, "entry uri")
    xmlbody.read_uri(uri, "entry uri")
    mode_text = element.get(_MODE)
    mode = xmlbody.read_mode(mode_text, uri) if mode_text is not None else None
    key = element.get(_KEY)
    if key is not None:
        xmlbody.read_text(key, "entry key")
    name = element.find(_RL + "display-name")
    display: str | None = None
    if name is not None:
        # XML whitespace (pretty-printing) collapses; other controls are refused.
        display = xmlbody.read_name(name.text or "", "display name") or None
    return ListEntry(uri=uri, display_name=display, mode=mode, credential=key)
