"""RFC 3261 section 25 grammar pieces, as regular expression strings.

Kept in one place, as h11's ``_abnf.py`` does, so that the parser reads as
the RFC does.  Only what the parser needs is here.
"""

from __future__ import annotations

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
# LWS = [*WSP CRLF] 1*WSP; after unfolding every LWS is spaces or tabs.
LWS = r"[ \t]+"
SWS = r"[ \t]*"
# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext: LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII;
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED_STRING = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
# escaped = "%" HEXDIG HEXDIG
ESCAPED = r"%[0-9A-Fa-f]{2}"
UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved );
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER = rf"(?:[{UNRESERVED}&=+$,;?/]|{ESCAPED})+"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD = rf"(?:[{UNRESERVED}&=+$,]|{ESCAPED})*"
# paramchar = param-unreserved / unreserved / escaped;
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAMCHARS = rf"(?:[{UNRESERVED}\[\]/:&+$]|{ESCAPED})+"
# hname / hvalue: hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNAME = rf"(?:[{UNRESERVED}\[\]/?:+$]|{ESCAPED})+"
HVALUE = rf"(?:[{UNRESERVED}\[\]/?:+$]|{ESCAPED})*"
# hostname = *( domainlabel "." ) toplabel [ "." ]
DOMAINLABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
TOPLABEL = r"[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
HOSTNAME = rf"(?:{DOMAINLABEL}\.)*{TOPLABEL}\.?"
IPV4 = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
# uric (RFC 2396) for absoluteURI's opaque part, plus "%" for escapes.
URIC = r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,%\[\]#]"
# gen-value = token / host / quoted-string (host brings "[", "]" and ":")
GEN_VALUE = r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+"
