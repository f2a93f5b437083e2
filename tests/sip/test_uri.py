from __future__ import annotations

import pytest

from vidim.sip import AbsoluteURI, LocalProtocolError, SIPParseError, SipURI, parse_uri, unescape


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "params"),
    [
        ("sip:alice@example.com", "alice", "example.com", None, ()),
        ("sips:bob@192.0.2.1:5061", "bob", "192.0.2.1", 5061, ()),
        ("sip:example.com;lr", None, "example.com", None, (("lr", None),)),
        (
            "sip:carol@[2001:db8::1]:5070;transport=tcp;maddr=x.example.com",
            "carol",
            "[2001:db8::1]",
            5070,
            (("transport", "tcp"), ("maddr", "x.example.com")),
        ),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            "+1-212-555-1212",
            "gateway.com",
            None,
            (("user", "phone"),),
        ),
        ("sip:%61lice@example.com.", "%61lice", "example.com.", None, ()),
    ],
)
def test_sip_uris_parse_and_serialize_back(
    text: str,
    user: str | None,
    host: str,
    port: int | None,
    params: tuple[tuple[str, str | None], ...],
) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    assert (uri.user, uri.host, uri.port, uri.params) == (user, host, port, params)
    assert str(uri) == text


def test_password_and_headers() -> None:
    uri = parse_uri("sip:user:secret@example.com?subject=project%20x&priority=urgent")
    assert isinstance(uri, SipURI)
    assert uri.password == "secret"
    assert uri.headers == (("subject", "project%20x"), ("priority", "urgent"))
    assert unescape(uri.headers[0][1]) == "project x"
    assert str(uri) == "sip:user:secret@example.com?subject=project%20x&priority=urgent"


@pytest.mark.parametrize(
    "text",
    [
        "tel:+1-201-555-0123",
        "urn:service:sos",
        "http://www.example.com/a?b=c",
        "mailto:alice@example.com",
    ],
)
def test_other_schemes_are_kept_opaque(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteURI)
    assert str(uri) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@example.com",
        "<sip:alice@example.com>",
        "sip:",
        "sip:alice@",
        "sip:alice@exa mple.com",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:port",
        "sip:alice@[2001:db8::1",
        "sip:alice@[2001:db8:::1]",
        "sip:alice@256.1.1.1",
        "sip:alice@1.2.3.\u0664",  # an IPv4 octet is ASCII digits, not any Unicode digit
        "sip:alice@[::1%25a;b]",
        "sip:al ice@example.com",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;a b",
        "sip:alice@example.com?x",
        "sip:a@b@example.com",
        "sip:alice@-bad-.com",
        "tel:",
        "1sip:alice@example.com",
        "sip:alice\r\n@example.com",
    ],
)
def test_malformed_uris_raise_parse_errors(text: str) -> None:
    with pytest.raises(SIPParseError):
        parse_uri(text)


def test_building_a_uri_validates_it() -> None:
    uri = SipURI(host="example.com", user="bob", port=5060, params=(("transport", "tcp"),))
    assert str(uri) == "sip:bob@example.com:5060;transport=tcp"
    assert uri.transport == "tcp"
    assert uri.address_of_record == "sip:bob@example.com"
    assert (
        str(uri.with_params(lr=None, transport="udp"))
        == "sip:bob@example.com:5060;lr;transport=udp"
    )
    with pytest.raises(LocalProtocolError, match="bad host"):
        SipURI(host="bad host")
    with pytest.raises(LocalProtocolError, match="bad user"):
        SipURI(host="example.com", user="bo b")
    with pytest.raises(LocalProtocolError, match="scheme"):
        SipURI(host="example.com", scheme="http")
    with pytest.raises(LocalProtocolError, match="parameter"):
        SipURI(host="example.com", params=(("a;b", None),))
    # with_params checks the parameters it adds, and keeps the rest as it is
    with pytest.raises(LocalProtocolError, match="parameter"):
        uri.with_params(key="a;b")
    secret = parse_uri("sip:user:pw@example.com;x=1?subject=a")
    assert isinstance(secret, SipURI)
    assert str(secret.with_params(X="2")) == "sip:user:pw@example.com;X=2?subject=a"
    assert str(secret.without_params_or_headers()) == "sip:user@example.com"
