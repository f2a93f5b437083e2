"""SDES keying for SRTP (RFC 4568): the ``a=crypto`` attribute, read and written.

Sans-IO and pure: this module only turns attribute text into typed values and
back, and says which offered attribute the focus can take.  The cipher itself
runs in :mod:`vidim.aio.srtp` (libsrtp through ``pylibsrtp``).

What is supported: the two suites every SDES phone offers,
``AES_CM_128_HMAC_SHA1_80`` and ``AES_CM_128_HMAC_SHA1_32`` (RFC 4568
section 6.2), each with one inline key (30 bytes: 16 of master key, 14 of
master salt, base64).  A lifetime (``|2^31``) is read and kept; the focus
rekeys on every offer/answer anyway.  An attribute with an MKI
(``|1:4``), several keys or session parameters (``UNENCRYPTED_SRTP``,
``KDR=``...) is not usable: :func:`choose_crypto` passes over it, and a
``RTP/SAVP`` line with nothing usable is rejected, as RFC 4568 section 7.1.2
has an answerer do.

The keys travel in the SDP in clear: they are secret only as far as the
signalling is (SIP over TLS end to end, docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "MASTER_KEY_LENGTH",
    "SUITES",
    "CryptoAttribute",
    "CryptoError",
    "SrtpKeys",
    "choose_crypto",
    "fresh_key",
    "new_master_key",
    "parse_crypto",
]

#: Master key (16) plus master salt (14) of the AES_CM_128 suites, in bytes.
MASTER_KEY_LENGTH = 30
#: The suites vidim speaks, strongest tag first (what the focus prefers when both are offered).
SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")

_TAG_RE = re.compile(r"[0-9]{1,9}")
_SUITE_RE = re.compile(r"[A-Za-z0-9_]+")
_LIFETIME_RE = re.compile(r"(?:2\^)?[0-9]+")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class CryptoError(ValueError):
    """An ``a=crypto`` value that does not follow RFC 4568's grammar."""


def new_master_key() -> bytes:
    """A fresh master key and salt (30 random bytes), for one direction of one stream."""
    return secrets.token_bytes(MASTER_KEY_LENGTH)


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto:<tag> <suite> inline:<key>[|lifetime][|mki:len] [params]`` line.

    ``key`` is the master key and salt, decoded; ``repr`` hides it.
    """

    tag: int
    suite: str
    key: bytes
    lifetime: str | None = None
    #: ``"value:length"`` when the key has an MKI (not usable by the focus).
    mki: str | None = None
    #: Further ``inline:`` keys (not usable by the focus).
    extra_keys: int = 0
    #: Session parameters, verbatim (not usable by the focus).
    session_params: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"CryptoAttribute(tag={self.tag}, suite={self.suite!r}, key=<{len(self.key)} bytes>)"

    @property
    def usable(self) -> bool:
        """Whether the focus can key SRTP with it: a known suite, one plain key of 30 bytes."""
        return (
            self.suite in SUITES
            and len(self.key) == MASTER_KEY_LENGTH
            and self.mki is None
            and self.extra_keys == 0
            and not self.session_params
        )

    def value(self) -> str:
        """The attribute's value, as written after ``a=crypto:``."""
        key = "inline:" + base64.b64encode(self.key).decode("ascii")
        if self.lifetime is not None:
            key += "|" + self.lifetime
        if self.mki is not None:
            key += "|" + self.mki
        return " ".join((str(self.tag), self.suite, key, *self.session_params))

    def answered(self, key: bytes) -> CryptoAttribute:
        """The answer to this offered attribute: same tag and suite, the answerer's own key."""
        return CryptoAttribute(self.tag, self.suite, key)


def parse_crypto(value: str) -> CryptoAttribute:
    """An ``a=crypto`` value (the text after ``a=crypto:``), or :class:`CryptoError`.

    Suites vidim does not know are read too (their key is decoded as given)
    so that an offer listing them is still understood; :attr:`CryptoAttribute.usable`
    says whether the focus can take one.
    """
    fields = value.split()
    if len(fields) < 3:
        raise CryptoError("a=crypto needs a tag, a suite and key parameters")
    tag_text, suite, key_params, *params = fields
    if not _TAG_RE.fullmatch(tag_text):
        raise CryptoError(f"a=crypto tag {tag_text[:20]!r} is not a number of up to 9 digits")
    if not _SUITE_RE.fullmatch(suite):
        raise CryptoError(f"a=crypto suite {suite[:40]!r} is malformed")
    keys = key_params.split(";")
    first = keys[0]
    if not first.startswith("inline:"):
        raise CryptoError("a=crypto key parameters must start with inline:")
    key_b64, *rest = first.removeprefix("inline:").split("|")
    if not _BASE64_RE.fullmatch(key_b64):
        raise CryptoError("a=crypto key is not base64")
    try:
        key = base64.b64decode(key_b64, validate=True)
    except binascii.Error as error:
        raise CryptoError("a=crypto key is not base64") from error
    lifetime = mki = None
    for item in rest:
        if ":" in item and mki is None:
            mki = item
        elif _LIFETIME_RE.fullmatch(item) and lifetime is None and mki is None:
            lifetime = item
        else:
            raise CryptoError(f"a=crypto key parameter {item[:40]!r} is malformed")
    return CryptoAttribute(int(tag_text), suite, key, lifetime, mki, len(keys) - 1, tuple(params))


def choose_crypto(offered: Iterable[CryptoAttribute]) -> CryptoAttribute | None:
    """The attribute the focus takes: the first usable one in offer order (RFC 4568 7.1.2)."""
    for attribute in offered:
        if attribute.usable:
            return attribute
    return None


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """The SRTP keying of one negotiated stream, from the focus's side.

    ``local_key`` protects what the focus sends to the participant (the key
    in the focus's answer); ``remote_key`` opens what the participant sends
    (the key in its offer).  ``repr`` hides both.
    """

    suite: str
    local_key: bytes
    remote_key: bytes

    def __repr__(self) -> str:
        return f"SrtpKeys(suite={self.suite!r}, keys=<hidden>)"


#: Gives the focus's key for an answered stream: ``keys(kind, offered)``.
KeyFactory = Callable[[str, CryptoAttribute], bytes]


def fresh_key(kind: str, offered: CryptoAttribute) -> bytes:
    """The default :data:`KeyFactory`: a new key for every answer."""
    return new_master_key()
