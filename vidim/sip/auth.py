"""Digest authentication: RFC 3261 section 22, with RFC 8760's algorithms.

Both sides, sans-IO:

* a client answers a challenge (``WWW-Authenticate`` in a 401,
  ``Proxy-Authenticate`` in a 407) with :func:`answer_challenges`, which
  picks the strongest algorithm offered per realm and returns the
  ``Authorization`` / ``Proxy-Authorization`` lines to add to the request
  sent again (new CSeq, same Call-ID: RFC 3261 22.2);
* a server asks with a :class:`Challenger`: :meth:`Challenger.check` takes a
  request and ``now``, and returns who it is from, or raises
  :class:`~vidim.sip.RemoteProtocolError` with the answer to send (401 with a
  fresh nonce, offering SHA-256 and MD5; 403 for wrong credentials).

Algorithms: ``SHA-256``, ``MD5`` and their ``-sess`` variants (RFC 8760
section 2.2, RFC 7616 section 3.4.2); ``qop=auth`` only (no ``auth-int``:
no SIP peer we meet asks for it).  Nonces are made statelessly (a time, 96
random bits and an HMAC over both with a per-challenger key), so a server
keeps no state per challenge; a nonce that is genuine but older than
``nonce_lifetime`` is answered ``stale=true`` (the client retries with the
new nonce without asking its user).  Replays are refused by remembering the
highest ``nc`` taken with each live nonce (RFC 7616 section 5.12).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import LocalProtocolError, RemoteProtocolError, SIPParseError
from .headers import quote
from .message import Request, Response
from .uri import parse_uri

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "Challenger",
    "ClientCredentials",
    "DigestCredentials",
    "DigestRealm",
    "answer_challenges",
    "choose_challenges",
    "digest_response",
    "hash_a1",
    "parse_challenge",
    "parse_credentials",
    "parse_users_file",
    "sign",
]

#: The hash of each algorithm name, strongest first (RFC 8760 section 2.1:
#: a server lists its challenges in order of preference).
ALGORITHMS: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "SHA-256": hashlib.sha256,
    "SHA-256-sess": hashlib.sha256,
    "MD5": hashlib.md5,
    "MD5-sess": hashlib.md5,
}

#: auth-param = token "=" ( token / quoted-string ), separated by commas (RFC 3261 25.1).
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9!%\'*+._`~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|$)')
_QUOTED_PAIR_RE = re.compile(r"\\(.)")
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")


def _params(value: str) -> tuple[str, dict[str, str]]:
    """A challenge's or credentials' scheme and its auth-params (names lower case)."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM_RE.match(rest, position)
        if match is None or match.end() == position:
            raise SIPParseError(f"malformed auth-param in {value!r}")
        name, text = match.group(1).lower(), match.group(2)
        if text.startswith('"'):
            text = _QUOTED_PAIR_RE.sub(r"\1", text[1:-1])
        params[name] = text
        position = match.end()
    return scheme, params


def _algorithm(params: Mapping[str, str]) -> str:
    """The algorithm named, spelt as in :data:`ALGORITHMS` (absent: MD5, RFC 3261 22.4)."""
    named = params.get("algorithm", "MD5")
    for algorithm in ALGORITHMS:
        if algorithm.lower() == named.lower():
            return algorithm
    return named  # unknown: the caller decides


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One ``WWW-Authenticate`` / ``Proxy-Authenticate`` value of the Digest scheme."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    #: The qop values offered (empty: RFC 2069 style, no qop).
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    #: The nonce was genuine but too old: retry with this one, same password.
    stale: bool = False

    def __str__(self) -> str:
        parts = [f"realm={quote(self.realm)}", f"nonce={quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


def parse_challenge(value: str) -> Challenge | None:
    """A Digest challenge, or None for another scheme; raises SIPParseError when malformed."""
    scheme, params = _params(value)
    if scheme.lower() != "digest":
        return None
    if "realm" not in params or "nonce" not in params:
        raise SIPParseError("a Digest challenge needs a realm and a nonce")
    qop = tuple(item.strip().lower() for item in params.get("qop", "").split(",") if item.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=_algorithm(params),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestCredentials:
    """One ``Authorization`` / ``Proxy-Authorization`` value of the Digest scheme."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    #: ``auth`` or None (RFC 2069 style: no cnonce, no nc).
    qop: str | None = None
    cnonce: str | None = None
    #: The nonce count, 8 hex digits on the wire.
    nc: int | None = None
    opaque: str | None = None

    def __str__(self) -> str:
        parts = [
            f"username={quote(self.username)}",
            f"realm={quote(self.realm)}",
            f"nonce={quote(self.nonce)}",
            f"uri={quote(self.uri)}",
            f"response={quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.qop is not None:
            parts += [
                f"qop={self.qop}",
                f"nc={self.nc or 0:08x}",
                f"cnonce={quote(self.cnonce or '')}",
            ]
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


def parse_credentials(value: str) -> DigestCredentials | None:
    """Digest credentials, or None for another scheme; raises SIPParseError when malformed."""
    scheme, params = _params(value)
    if scheme.lower() != "digest":
        return None
    missing = [n for n in ("username", "realm", "nonce", "uri", "response") if n not in params]
    if missing:
        raise SIPParseError(f"Digest credentials without {', '.join(missing)}")
    qop = params.get("qop")
    nc: int | None = None
    if qop is not None:
        if "cnonce" not in params or not _NC_RE.fullmatch(params.get("nc", "")):
            raise SIPParseError("Digest credentials with qop need a cnonce and an 8-digit nc")
        nc = int(params["nc"], 16)
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=_algorithm(params),
        qop=qop.lower() if qop is not None else None,
        cnonce=params.get("cnonce"),
        nc=nc,
        opaque=params.get("opaque"),
    )


def _hex(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def hash_a1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password): what an htdigest file keeps instead of the password."""
    return _hex(algorithm, f"{username}:{realm}:{password}")


def digest_response(
    *,
    algorithm: str,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 3261 22.4, RFC 2617 3.2.2.1, RFC 7616 3.4.1).

    ``ha1`` is :func:`hash_a1`'s value; a ``-sess`` algorithm hashes it again
    with the nonce and cnonce.
    """
    if algorithm not in ALGORITHMS:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
    if algorithm.endswith("-sess"):
        ha1 = _hex(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = _hex(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hex(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hex(algorithm, f"{ha1}:{nonce}:{nc or 0:08x}:{cnonce or ''}:{qop}:{ha2}")


def _strongest(challenges: Iterable[Challenge]) -> dict[str, Challenge]:
    """Per realm, the challenge with the strongest algorithm we support."""
    rank = {algorithm: index for index, algorithm in enumerate(ALGORITHMS)}
    best: dict[str, Challenge] = {}
    for challenge in challenges:
        if challenge.algorithm not in rank:
            continue
        if challenge.qop and "auth" not in challenge.qop:
            continue  # auth-int only
        held = best.get(challenge.realm)
        if held is None or rank[challenge.algorithm] < rank[held.algorithm]:
            best[challenge.realm] = challenge
    return best


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCredentials:
    """Who we are when a server challenges us (the daemon's ``[auth]`` section)."""

    username: str
    password: str = field(repr=False)
    #: Answer challenges of this realm only (None: of any realm).  A password
    #: sent to every realm asking lets any server on the path try it offline.
    realm: str | None = None


def answer_challenges(
    request: Request,
    response: Response,
    *,
    username: str,
    password: str,
    realm: str | None = None,
    cnonce: Callable[[], str] | None = None,
) -> list[tuple[str, str]]:
    """The credential lines that answer a 401's or 407's challenges to ``request``.

    One line per realm challenged (:func:`choose_challenges`), with nonce
    count 1; empty when nothing could be answered.  ``cnonce`` makes the
    client nonce (default: 96 random bits).
    """
    return [
        (header, str(sign(request, challenge, username=username, password=password, cnonce=cnonce)))
        for header, challenge in choose_challenges(response, realm=realm)
    ]


def choose_challenges(
    response: Response, *, realm: str | None = None
) -> list[tuple[str, Challenge]]:
    """The challenges of a 401 or 407 to answer, each with the header its answer goes in.

    Per realm, the strongest algorithm offered that we support (RFC 8760
    section 2.4), ``qop=auth`` or none; other schemes, unknown algorithms,
    ``auth-int`` only, malformed values and realms other than ``realm``
    (when given) are left out.
    """
    proxy = response.status == 407
    challenge_header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    answer_header = "Proxy-Authorization" if proxy else "Authorization"
    challenges = []
    for value in response.headers.get_all(challenge_header):
        try:
            challenge = parse_challenge(value)
        except SIPParseError:
            continue
        if challenge is not None and realm in (None, challenge.realm):
            challenges.append(challenge)
    return [(answer_header, challenge) for challenge in _strongest(challenges).values()]


def sign(
    request: Request,
    challenge: Challenge,
    *,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: Callable[[], str] | None = None,
) -> DigestCredentials:
    """The credentials that answer ``challenge`` for ``request``.

    ``nc``: how many requests this nonce has signed, this one included (a
    request sent again after another realm's challenge signs with 2).
    """
    uri = str(request.uri)
    qop = "auth" if challenge.qop else None
    client_nonce = (cnonce or _new_cnonce)() if qop else None
    count = nc if qop else None
    ha1 = hash_a1(challenge.algorithm, username, challenge.realm, password)
    response_value = digest_response(
        algorithm=challenge.algorithm,
        ha1=ha1,
        method=request.method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=count,
        cnonce=client_nonce,
    )
    return DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response_value,
        algorithm=challenge.algorithm,
        qop=qop,
        cnonce=client_nonce,
        nc=count,
        opaque=challenge.opaque,
    )


def _new_cnonce() -> str:
    return secrets.token_hex(12)


def parse_users_file(text: str, realm: str) -> dict[str, dict[str, str]]:
    """An ``htdigest``-style file: ``user:realm:HA1`` lines, for one realm.

    The HA1 says its algorithm by its length: 32 hex digits are MD5, 64 are
    SHA-256 (a user may have a line of each; Apache's ``htdigest`` writes
    MD5).  Blank lines and ``#`` comments are skipped; lines of other realms
    are left out.  Returns ``{user: {algorithm: HA1}}``; raises ValueError
    naming the first bad line.
    """
    users: dict[str, dict[str, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, line_realm, ha1 = ([*line.rsplit(":", 2), "", ""])[:3]
        ha1 = ha1.lower()
        algorithm = {32: "MD5", 64: "SHA-256"}.get(len(ha1))
        if not user or algorithm is None or not re.fullmatch(r"[0-9a-f]+", ha1):
            raise ValueError(f"line {number}: not user:realm:HA1 (32 or 64 hex digits)")
        if line_realm == realm:
            users.setdefault(user, {})[algorithm] = ha1
    return users


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestRealm:
    """What a server challenges with: its realm and its users (the daemon's ``users_file``)."""

    realm: str
    #: ``{user: {algorithm: HA1}}`` (:func:`parse_users_file`).
    users: Mapping[str, Mapping[str, str]] = field(repr=False)
    #: Seconds a nonce is taken; after that the client is asked again (``stale=true``).
    nonce_lifetime: float = 300.0
    #: Offered in this order, one challenge each.  RFC 8760 wants the strongest
    #: first and a client to take the first it supports; a client that reads
    #: only the first (SIPp 3.6: "authentication must use MD5") needs MD5 first.
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")


def _same_uri(digest_uri: str, request: Request) -> bool:
    """Whether the credentials sign this request's Request-URI (as written, or once parsed)."""
    if digest_uri == str(request.uri):
        return True
    try:
        return str(parse_uri(digest_uri)) == str(request.uri)
    except SIPParseError:
        return False


class Challenger:
    """A server's side of Digest: challenges requests and checks their credentials.

    Args:
        realm: the realm named in the challenges (and in the users' HA1s).
        users: ``{user: {algorithm: HA1}}`` (:func:`parse_users_file`);
            ``MD5`` and ``SHA-256`` HA1s serve their ``-sess`` variants too.
        algorithms: offered, in order of preference (RFC 8760: one challenge each).
        nonce_lifetime: seconds a nonce is taken; after that ``stale=true``.
        proxy: challenge as a proxy (407, ``Proxy-Authenticate``).
        key: the HMAC key of the nonces (default: random, 256 bits).
        warning_host: the Warning header's agent.
    """

    def __init__(
        self,
        realm: str,
        users: Mapping[str, Mapping[str, str]],
        *,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        proxy: bool = False,
        key: bytes | None = None,
        warning_host: str = "vidim",
    ) -> None:
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise LocalProtocolError(f"unsupported digest algorithms: {unknown or 'none'}")
        self.realm = realm
        self.users = users
        self.algorithms = algorithms
        self.nonce_lifetime = nonce_lifetime
        self.proxy = proxy
        self.warning_host = warning_host
        self._key = key if key is not None else secrets.token_bytes(32)
        #: The highest nonce count taken with each live nonce, and the nonce's time.
        self._counts: dict[str, tuple[int, float]] = {}

    @classmethod
    def for_realm(cls, realm: DigestRealm, *, warning_host: str = "vidim") -> Challenger:
        return cls(
            realm.realm,
            realm.users,
            algorithms=realm.algorithms,
            nonce_lifetime=realm.nonce_lifetime,
            warning_host=warning_host,
        )

    # -- nonces ------------------------------------------------------------------
    def new_nonce(self, now: float) -> str:
        """A nonce: its time, 96 random bits, and an HMAC over both (no state kept)."""
        body = struct.pack(">d", now) + secrets.token_bytes(12)
        tag = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(body + tag).decode("ascii")

    def _nonce_time(self, nonce: str) -> float | None:
        """When this challenger made ``nonce``, or None if it did not."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) != 36:
            return None
        body, tag = raw[:20], raw[20:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(tag, expected):
            return None
        made: float = struct.unpack(">d", body[:8])[0]
        return made

    def challenges(self, now: float, *, stale: bool = False) -> tuple[tuple[str, str], ...]:
        """The challenge lines of a 401/407: one per algorithm, sharing a fresh nonce."""
        name = "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"
        nonce = self.new_nonce(now)
        return tuple(
            (
                name,
                str(
                    Challenge(
                        realm=self.realm, nonce=nonce, algorithm=a, qop=("auth",), stale=stale
                    )
                ),
            )
            for a in self.algorithms
        )

    # -- checking ----------------------------------------------------------------
    def check(self, request: Request, now: float) -> str:
        """The user ``request`` is authenticated as; else raises what to answer.

        Raises:
            RemoteProtocolError: ``status_hint`` 401 (407 as a proxy) with the
                challenge lines in ``headers``: no credentials for our realm,
                or a stale nonce (``stale=true``); 403: credentials that are
                wrong, malformed, replayed (an ``nc`` not above the last one
                taken with the nonce), for another URI, or of an unknown user.
        """
        self._sweep(now)
        header = "Proxy-Authorization" if self.proxy else "Authorization"
        credentials = None
        for value in request.headers.get_all(header):
            try:
                parsed = parse_credentials(value)
            except SIPParseError as error:
                raise self._forbidden(error.reason) from None
            if parsed is not None and parsed.realm == self.realm:
                credentials = parsed
                break
        if credentials is None:
            raise self._challenge("authentication required", now)
        made = self._nonce_time(credentials.nonce)
        if made is None:
            # Not ours (another daemon's key, or a restart): ask again, not a refusal.
            raise self._challenge("unknown nonce", now)
        if credentials.algorithm not in self.algorithms and (
            credentials.algorithm.removesuffix("-sess") not in self.algorithms
        ):
            raise self._forbidden(f"algorithm {credentials.algorithm} not offered")
        if credentials.qop != "auth" or credentials.nc is None:
            raise self._forbidden("qop=auth required")
        if not _same_uri(credentials.uri, request):
            raise self._forbidden("the digest uri is not the Request-URI")
        ha1 = self.users.get(credentials.username, {}).get(
            credentials.algorithm.removesuffix("-sess")
        )
        expected = (
            digest_response(
                algorithm=credentials.algorithm,
                ha1=ha1,
                method=request.method,
                uri=credentials.uri,
                nonce=credentials.nonce,
                qop=credentials.qop,
                nc=credentials.nc,
                cnonce=credentials.cnonce,
            )
            if ha1 is not None
            else ""
        )
        if not hmac.compare_digest(expected, credentials.response) or ha1 is None:
            raise self._forbidden(f"wrong credentials for {credentials.username!r}")
        if now - made > self.nonce_lifetime:
            raise self._challenge("stale nonce", now, stale=True)
        last, _ = self._counts.get(credentials.nonce, (0, made))
        if credentials.nc <= last:
            raise self._forbidden(f"nonce count {credentials.nc:08x} replayed")
        self._counts[credentials.nonce] = (credentials.nc, made)
        return credentials.username

    def _challenge(self, reason: str, now: float, *, stale: bool = False) -> RemoteProtocolError:
        status = 407 if self.proxy else 401
        headers = self.challenges(now, stale=stale)
        return RemoteProtocolError(reason, status_hint=status, headers=headers)

    def _forbidden(self, reason: str) -> RemoteProtocolError:
        return RemoteProtocolError(reason, status_hint=403)

    def _sweep(self, now: float) -> None:
        """Forget the counts of nonces too old to be taken again (bounded memory)."""
        if len(self._counts) < 1024:
            return
        limit = now - self.nonce_lifetime
        self._counts = {n: v for n, v in self._counts.items() if v[1] >= limit}
