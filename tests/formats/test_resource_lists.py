"""RFC 4826/5366 resource lists with vidim's mode and key attributes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidim.resource_lists import (
    RESOURCE_LISTS_NS,
    RESOURCE_LISTS_TYPE,
    VIDIM_NS,
    FormatError,
    ListEntry,
    build_resource_list,
    parse_resource_list,
)
from vidim.sip import LocalProtocolError, RemoteProtocolError, build_multipart, parse_multipart
from vidim.vocabulary import Mode

# RFC 5366 section 5 style: what a conference-aware client (or vidim) sends.
RFC5366_BODY = b"""<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"
                xmlns:cp="urn:ietf:params:xml:ns:copycontrol"
                xmlns:vidim="urn:vidim:params:xml:ns:conference">
  <list>
    <entry uri="sip:bill@example.com" cp:copyControl="to" vidim:mode="video"/>
    <entry uri="sip:randy@example.net" cp:copyControl="to" vidim:mode="audio" vidim:key="k-r4nd">
      <display-name>Randy
        Jones</display-name>
    </entry>
    <entry uri="sip:eddy@example.com" cp:copyControl="bcc" cp:anonymize="true"/>
  </list>
</resource-lists>
"""

_HEAD = f'<resource-lists xmlns="{RESOURCE_LISTS_NS}" xmlns:vidim="{VIDIM_NS}"><list>'
_TAIL = "</list></resource-lists>"


def test_content_type() -> None:
    assert RESOURCE_LISTS_TYPE == "application/resource-lists+xml"


def test_parse_rfc5366_body() -> None:
    assert parse_resource_list(RFC5366_BODY) == [
        ListEntry("sip:bill@example.com", None, Mode.VIDEO, None),
        ListEntry("sip:randy@example.net", "Randy Jones", Mode.AUDIO, "k-r4nd"),
        ListEntry("sip:eddy@example.com", None, None, None),
    ]


def test_nested_lists_are_flattened_in_document_order() -> None:
    body = f"""<resource-lists xmlns="{RESOURCE_LISTS_NS}">
      <list name="a"><entry uri="sip:a@x"/>
        <list name="b"><entry uri="sip:b@x"/></list>
      </list>
      <list><entry uri="sips:c@x"/></list>
    </resource-lists>""".encode()
    assert [e.uri for e in parse_resource_list(body)] == ["sip:a@x", "sip:b@x", "sips:c@x"]


def test_build_shape() -> None:
    body = build_resource_list([ListEntry("sip:bob@example.com", "Bob", Mode.WATCH, "s3cr3t")])
    text = body.decode()
    assert text.startswith("<?xml")
    assert f'xmlns="{RESOURCE_LISTS_NS}"' in text
    assert f'xmlns:vidim="{VIDIM_NS}"' in text
    assert 'vidim:mode="watch"' in text
    assert 'vidim:key="s3cr3t"' in text
    assert "<display-name>Bob</display-name>" in text


def test_minimal_entry_has_no_extension_attributes() -> None:
    body = build_resource_list([ListEntry("sip:bob@example.com")])
    assert b"vidim:mode" not in body
    assert b"vidim:key" not in body
    assert b"display-name" not in body
    assert parse_resource_list(body) == [ListEntry("sip:bob@example.com")]


def test_empty_list() -> None:
    assert parse_resource_list(build_resource_list([])) == []


def test_escaping_round_trip() -> None:
    entries = [
        ListEntry("sip:a@example.com", 'Al <"the & pal"> O\'Neil', Mode.VIDEO, 'k"<&>'),
        ListEntry("sip:%22b%22@example.com;transport=tcp", "Zoë 李", None, None),
    ]
    body = build_resource_list(entries)
    assert b'<"the' not in body
    assert parse_resource_list(body) == entries


def test_inside_a_multipart_body() -> None:
    xml = build_resource_list([ListEntry("sip:bob@example.com", mode=Mode.AUDIO)])
    ctype, body = build_multipart([("application/sdp", b"v=0\r\n"), (RESOURCE_LISTS_TYPE, xml)])
    boundary = ctype.split("boundary=")[1].strip('"')
    part = parse_multipart(body, boundary)[1]
    assert parse_resource_list(part.body) == [ListEntry("sip:bob@example.com", mode=Mode.AUDIO)]


def test_character_references_for_line_breaks_collapse_in_names() -> None:
    body = (
        _HEAD + '<entry uri="sip:a@x"><display-name> A&#13;&#10;B\t</display-name></entry>' + _TAIL
    )
    assert parse_resource_list(body.encode())[0].display_name == "A B"


def test_mode_is_read_case_insensitively() -> None:
    body = f'<resource-lists xmlns="{RESOURCE_LISTS_NS}" xmlns:v="{VIDIM_NS}">' \
           '<list><entry uri="sip:a@x" v:mode=" Video "/></list></resource-lists>'  # fmt: skip
    assert parse_resource_list(body.encode())[0].mode is Mode.VIDEO


def test_mode_in_the_wrong_namespace_is_not_a_mode() -> None:
    body = f'<resource-lists xmlns="{RESOURCE_LISTS_NS}" xmlns:o="urn:other">' \
           '<list><entry uri="sip:a@x" o:mode="video" mode="audio"/></list></resource-lists>'  # fmt: skip
    assert parse_resource_list(body.encode())[0].mode is None


@pytest.mark.parametrize(
    "entry",
    [
        ListEntry("sip:a@x\r\nVia: evil", None, None, None),
        ListEntry("not a uri", None, None, None),
        ListEntry("sip:a@x", "line\nbreak", None, None),
        ListEntry("sip:a@x", "nul\x00", None, None),
        ListEntry("sip:a@x", None, None, "key\r\n"),
    ],
)
def test_build_refuses_what_cannot_be_sent(entry: ListEntry) -> None:
    with pytest.raises(LocalProtocolError, match=r"entry URI|control"):
        build_resource_list([entry])


# --- hostile and broken input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
            b'"&lol;&lol;&lol;&lol;">]><resource-lists xmlns="urn:ietf:params:xml:ns:'
            b'resource-lists"><list><entry uri="sip:&lol2;@x"/></list></resource-lists>',
            "DTD",
        ),
        (
            b'<!DOCTYPE r SYSTEM "file:///etc/passwd"><resource-lists/>',
            "DTD",
        ),
        (
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
            b'<entry uri="&xxe;"/></list></resource-lists>',
            "malformed XML",
        ),
        (b"", "malformed XML"),
        (b"not xml at all", "malformed XML"),
        (b"<resource-lists", "malformed XML"),
        (
            b"<resource-lists><list><entry uri='sip:a@x'/></list></resource-lists>",
            "expected <resource-lists>",
        ),
        (
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:conference-info"/>',
            "expected <resource-lists>",
        ),
        (b'<r:list xmlns:r="urn:ietf:params:xml:ns:resource-lists"/>', "expected <resource-lists>"),
        ((_HEAD + "<entry/>" + _TAIL).encode(), "without a uri"),
        ((_HEAD + '<entry uri=""/>' + _TAIL).encode(), "without a uri"),
        ((_HEAD + '<entry uri="bob"/>' + _TAIL).encode(), "bad entry uri"),
        ((_HEAD + '<entry uri="sip:a@x&#13;&#10;Via: x"/>' + _TAIL).encode(), "control"),
        ((_HEAD + '<entry uri="sip:a@x" vidim:mode="hologram"/>' + _TAIL).encode(), "unknown mode"),
        (
            (
                _HEAD + '<entry uri="sip:a@x"><display-name>a&#0;</display-name></entry>' + _TAIL
            ).encode(),
            "malformed XML",
        ),
        (
            (
                _HEAD
                + '<entry uri="sip:a@x"><display-name>a&#127;b&#133;</display-name></entry>'
                + _TAIL
            ).encode(),
            "control",
        ),
        ((_HEAD + '<entry-ref ref="lists/a"/>' + _TAIL).encode(), "entry-ref"),
        ((_HEAD + '<external anchor="http://x/l"/>' + _TAIL).encode(), "external"),
        ((_HEAD + "<list>" * 40 + "</list>" * 40 + _TAIL).encode(), "nested deeper"),
        ((_HEAD + '<entry uri="sip:a@x"/>' * 300 + _TAIL).encode(), "more than 256 entries"),
    ],
)
def test_hostile_or_broken_bodies(body: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match) as info:
        parse_resource_list(body)
    assert info.value.status_hint == 400
    assert isinstance(info.value, RemoteProtocolError)


def test_oversize_body() -> None:
    body = (_HEAD + "<!--" + "x" * 70_000 + "-->" + _TAIL).encode()
    with pytest.raises(FormatError, match="exceeds the limit of 65536"):
        parse_resource_list(body)
    small = build_resource_list([ListEntry("sip:a@x")])
    with pytest.raises(FormatError, match="exceeds the limit of 10"):
        parse_resource_list(small, max_size=10)
    assert parse_resource_list(body, max_size=100_000) == []


def test_utf16_encoded_document_is_read() -> None:
    text = '<?xml version="1.0" encoding="UTF-16"?>' + _HEAD + '<entry uri="sip:z@x"/>' + _TAIL
    assert parse_resource_list(text.encode("utf-16")) == [ListEntry("sip:z@x")]


def test_utf16_doctype_is_refused_too() -> None:
    text = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]>' + _HEAD + _TAIL
    with pytest.raises(FormatError, match="DTD"):
        parse_resource_list(text.encode("utf-16"))


# --- property: any list vidim builds, it reads back -------------------------------------

_USER = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-!~*'()+$", min_size=1, max_size=12)
_LABEL = r"[a-z](?:[a-z0-9-]{0,8}[a-z0-9])?"
_HOST = st.from_regex(rf"{_LABEL}(?:\.{_LABEL}){{0,2}}", fullmatch=True)
_URI = st.builds(
    lambda scheme, u, h: f"{scheme}:{u}@{h}", st.sampled_from(["sip", "sips"]), _USER, _HOST
)
# Display names as parsing gives them back: no controls, XML whitespace collapsed.
_NAME = (
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
        max_size=30,
    )
    .map(lambda s: " ".join(s.split(" ")).strip())
    .filter(lambda s: s != "" and "  " not in s)
)
_KEY = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_ENTRY = st.builds(
    ListEntry,
    uri=_URI,
    display_name=st.none() | _NAME,
    mode=st.none() | st.sampled_from(list(Mode)),
    credential=st.none() | _KEY,
)


@given(st.lists(_ENTRY, max_size=20))
def test_round_trip(entries: list[ListEntry]) -> None:
    assert parse_resource_list(build_resource_list(entries)) == entries


def test_written_bytes_with_every_escape() -> None:
    """The document as written, to the byte: what peers and the focus INVITE carry."""
    entries = [
        ListEntry("sip:a@x", display_name='A & B <"C"> \t\u00e9\u4e2d', mode=Mode.WATCH,
                  credential="k&<>\"'\t"),
        ListEntry("sip:b@x"),
        ListEntry("sip:c@x", credential="plain"),
    ]  # fmt: skip
    assert build_resource_list(entries) == (
        "<?xml version='1.0' encoding='utf-8'?>\n" + _HEAD
        + '<entry uri="sip:a@x" vidim:mode="watch" vidim:key="k&amp;&lt;&gt;&quot;\'&#09;">'
        + '<display-name>A &amp; B &lt;"C"&gt; \t\u00e9\u4e2d</display-name></entry>'
        + '<entry uri="sip:b@x" /><entry uri="sip:c@x" vidim:key="plain" />' + _TAIL
    ).encode()  # fmt: skip
    assert parse_resource_list(build_resource_list(entries))[0].credential == "k&<>\"'\t"


def test_written_bytes_of_an_empty_list() -> None:
    expected = "<?xml version='1.0' encoding='utf-8'?>\n" + _HEAD.replace("<list>", "<list />")
    assert build_resource_list([]) == (expected + "</resource-lists>").encode()


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_resource_list(data)
