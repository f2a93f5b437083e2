"""Digest authentication (vidim.sip.auth): the RFC examples, both sides, and refusals."""

from __future__ import annotations

import pytest
from sip_factory import request_bytes

from vidim.sip import (
    Challenger,
    RemoteProtocolError,
    Request,
    Response,
    SIPParseError,
    answer_challenges,
    digest_response,
    hash_a1,
    make_response,
    parse_challenge,
    parse_credentials,
    parse_message,
    parse_users_file,
)

# RFC 2617 section 3.5 (MD5, qop=auth): the example every implementation checks.
RFC2617 = {
    "username": "Mufasa",
    "realm": "testrealm@host.com",
    "password": "Circle Of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    "nc": 1,
    "cnonce": "0a4f113b",
}

# RFC 7616 section 3.9.1, the example for the algorithms RFC 8760 brings to SIP
# (RFC 8760 section 2.1 takes its algorithms and their computation from RFC 7616).
RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "nc": 1,
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


def _response(vector: dict[str, object], algorithm: str) -> str:
    v = {k: str(x) for k, x in vector.items() if k != "nc"}
    return digest_response(
        algorithm=algorithm,
        ha1=hash_a1(algorithm, v["username"], v["realm"], v["password"]),
        method=v["method"],
        uri=v["uri"],
        nonce=v["nonce"],
        qop="auth",
        nc=1,
        cnonce=v["cnonce"],
    )


def test_rfc2617_md5_example() -> None:
    assert _response(RFC2617, "MD5") == "6629fae49393a05397450978507c4ef1"


def test_rfc7616_md5_example() -> None:
    assert _response(RFC7616, "MD5") == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc7616_sha256_example() -> None:
    assert (
        _response(RFC7616, "SHA-256")
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_rfc2069_style_without_qop() -> None:
    # RFC 2069 (no qop): H(HA1:nonce:HA2), still what some SIP servers ask.
    ha1 = hash_a1("MD5", "Mufasa", "testrealm@host.com", "CircleOfLife")
    value = digest_response(
        algorithm="MD5",
        ha1=ha1,
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
    )
    assert value == "1949323746fe6a43ef61f9606e7febea"  # RFC 2069 section 2.4


def test_sess_variant_hashes_ha1_with_the_nonces() -> None:
    plain = _response(RFC7616, "SHA-256")
    sess = _response(RFC7616, "SHA-256-sess")
    assert sess != plain
    assert len(sess) == 64


def test_parse_a_kamailio_challenge() -> None:
    challenge = parse_challenge(
        'Digest realm="127.0.0.1", nonce="Z2s/xWdrPpnQ1p+0kCk9vHo=", qop="auth,auth-int", '
        "algorithm=SHA-256, stale=TRUE"
    )
    assert challenge is not None
    assert challenge.realm == "127.0.0.1"
    assert challenge.nonce == "Z2s/xWdrPpnQ1p+0kCk9vHo="
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm == "SHA-256"
    assert challenge.stale


def test_parse_challenge_round_trip_and_other_schemes() -> None:
    value = 'Digest realm="a \\"b\\", c", nonce="n", algorithm=MD5'
    challenge = parse_challenge(value)
    assert challenge is not None
    assert challenge.realm == 'a "b", c'
    assert parse_challenge(str(challenge)) == challenge
    assert parse_challenge('Basic realm="x"') is None
    with pytest.raises(SIPParseError):
        parse_challenge('Digest realm="x"')  # no nonce
    with pytest.raises(SIPParseError):
        parse_challenge('Digest realm="x", nonce')


def test_parse_credentials_round_trip() -> None:
    value = (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
        'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    credentials = parse_credentials(value)
    assert credentials is not None
    assert credentials.nc == 1
    assert credentials.cnonce == "0a4f113b"
    assert parse_credentials(str(credentials)) == credentials
    with pytest.raises(SIPParseError):
        parse_credentials(value.replace("nc=00000001", "nc=1"))


def _request(uri: str = "sip:vidim@example.com", **extra: str) -> Request:
    message = parse_message(request_bytes("MESSAGE", uri, extra=list(extra.items())))
    assert isinstance(message, Request)
    return message


def _challenged(status: int, *values: str) -> Response:
    name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    return make_response(_request(), status, headers=[(name, v) for v in values])


def test_answer_picks_sha256_over_md5_per_realm() -> None:
    response = _challenged(
        401,
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="n1", algorithm=SHA-256, qop="auth"',
        'Digest realm="other", nonce="n2", qop="auth"',
    )
    lines = answer_challenges(_request(), response, username="u", password="p", cnonce=lambda: "c")
    assert [name for name, _ in lines] == ["Authorization", "Authorization"]
    parsed = [parse_credentials(value) for _, value in lines]
    assert [(c.realm, c.algorithm) for c in parsed if c] == [("r", "SHA-256"), ("other", "MD5")]
    first = parsed[0]
    assert first is not None
    assert first.uri == "sip:vidim@example.com"
    assert first.nc == 1
    assert first.response == digest_response(
        algorithm="SHA-256",
        ha1=hash_a1("SHA-256", "u", "r", "p"),
        method="MESSAGE",
        uri="sip:vidim@example.com",
        nonce="n1",
        qop="auth",
        nc=1,
        cnonce="c",
    )


def test_a_407_gets_proxy_authorization_and_the_opaque_back() -> None:
    response = _challenged(407, 'Digest realm="r", nonce="n", opaque="o"')
    [(name, value)] = answer_challenges(_request(), response, username="u", password="p")
    credentials = parse_credentials(value)
    assert name == "Proxy-Authorization"
    assert credentials is not None
    assert credentials.opaque == "o"
    assert credentials.qop is None


def test_nothing_to_answer() -> None:
    response = _challenged(
        401,
        'Basic realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", qop="auth-int"',
        "Digest garbage",
    )
    assert answer_challenges(_request(), response, username="u", password="p") == []


# -- the server side ---------------------------------------------------------------
USERS = {
    "alice": {
        "MD5": hash_a1("MD5", "alice", "vidim", "secret"),
        "SHA-256": hash_a1("SHA-256", "alice", "vidim", "secret"),
    }
}


def _challenge_of(challenger: Challenger, request: Request, now: float) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        challenger.check(request, now)
    return caught.value


def _with_answer(request: Request, error: RemoteProtocolError, password: str) -> Request:
    challenge = make_response(request, error.status_hint, headers=error.headers)
    lines = answer_challenges(request, challenge, username="alice", password=password)
    return _request(**dict(lines))


def test_challenger_offers_both_algorithms_with_one_fresh_nonce() -> None:
    challenger = Challenger("vidim", USERS)
    error = _challenge_of(challenger, _request(), 100.0)
    assert error.status_hint == 401
    challenges = [parse_challenge(value) for _, value in error.headers]
    assert [c.algorithm for c in challenges if c] == ["SHA-256", "MD5"]
    assert len({c.nonce for c in challenges if c}) == 1
    again = _challenge_of(challenger, _request(), 100.0)
    assert parse_challenge(again.headers[0][1]) != challenges[0]  # a new nonce each time


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_challenger_takes_the_right_password_once(algorithm: str) -> None:
    challenger = Challenger("vidim", USERS, algorithms=(algorithm,))
    error = _challenge_of(challenger, _request(), 100.0)
    retried = _with_answer(_request(), error, "secret")
    assert challenger.check(retried, 101.0) == "alice"
    replayed = _challenge_of(challenger, retried, 102.0)
    assert replayed.status_hint == 403
    assert "replayed" in replayed.reason


def test_challenger_refuses_a_wrong_password_with_403() -> None:
    challenger = Challenger("vidim", USERS)
    error = _challenge_of(challenger, _request(), 100.0)
    refused = _challenge_of(challenger, _with_answer(_request(), error, "guess"), 101.0)
    assert refused.status_hint == 403
    assert "wrong credentials for 'alice'" in refused.reason


def test_challenger_asks_again_with_stale_for_an_old_nonce() -> None:
    challenger = Challenger("vidim", USERS, nonce_lifetime=30.0)
    error = _challenge_of(challenger, _request(), 100.0)
    retried = _with_answer(_request(), error, "secret")
    stale = _challenge_of(challenger, retried, 131.0)
    assert stale.status_hint == 401
    challenge = parse_challenge(stale.headers[0][1])
    assert challenge is not None
    assert challenge.stale


def test_challenger_refuses_a_nonce_it_did_not_make() -> None:
    other = Challenger("vidim", USERS)
    challenger = Challenger("vidim", USERS)
    forged = _with_answer(_request(), _challenge_of(other, _request(), 100.0), "secret")
    error = _challenge_of(challenger, forged, 101.0)
    assert error.status_hint == 401
    assert error.reason == "unknown nonce"


def test_challenger_refuses_credentials_for_another_uri() -> None:
    challenger = Challenger("vidim", USERS)
    error = _challenge_of(challenger, _request(), 100.0)
    lines = answer_challenges(
        _request(), make_response(_request(), 401, headers=error.headers),
        username="alice", password="secret",
    )  # fmt: skip
    elsewhere = _request("sip:vidim@elsewhere.example.com", **dict(lines))
    assert _challenge_of(challenger, elsewhere, 101.0).status_hint == 403


def test_challenger_as_a_proxy_uses_407() -> None:
    challenger = Challenger("vidim", USERS, proxy=True)
    error = _challenge_of(challenger, _request(), 100.0)
    assert error.status_hint == 407
    assert {name for name, _ in error.headers} == {"Proxy-Authenticate"}
    retried = _with_answer(_request(), error, "secret")
    assert challenger.check(retried, 101.0) == "alice"


def test_users_file() -> None:
    md5 = hash_a1("MD5", "bob", "vidim", "pw")
    sha = hash_a1("SHA-256", "bob", "vidim", "pw")
    text = f"# users\n\nbob:vidim:{md5}\nbob:vidim:{sha}\ncarol:elsewhere:{md5}\n"
    assert parse_users_file(text, "vidim") == {"bob": {"MD5": md5, "SHA-256": sha}}
    with pytest.raises(ValueError, match="line 2"):
        parse_users_file(f"bob:vidim:{md5}\nbob:vidim:xyz\n", "vidim")
