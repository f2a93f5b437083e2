"""RFC 3261 section 25 grammar pieces, as regular expression strings.

Kept in one place, as h11's ``_abnf.py`` does, so that the parser reads as
the RFC does.  Only what the parser needs is here.  The pieces combine into
one expression per value (a SIP URI, a name-addr, a via-parm...), matched
once with its parts in named groups: Python's regular expression engine does
the scanning, and every part it hands back is already checked.

Written for that engine: a run of allowed characters is one character class
repeated (``[...]++``), the rarer alternative (an escape) outside it, and a
repetition that the next character ends anyway is possessive (``++``, ``*+``),
so that a match never backtracks into it.  The same languages as the ABNF, in
a few times fewer steps than the literal transcription.
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
QUOTED_STRING = r'"(?:[^"\\\r\n]++|\\[^\r\n])*+"'
# escaped = "%" HEXDIG HEXDIG
ESCAPED = r"%[0-9A-Fa-f]{2}"
UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved );
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER = rf"(?:[{UNRESERVED}&=+$,;?/]++|{ESCAPED})++"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD = rf"(?:[{UNRESERVED}&=+$,]++|{ESCAPED})*+"
# paramchar = param-unreserved / unreserved / escaped;
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAMCHARS = rf"(?:[{UNRESERVED}\[\]/:&+$]++|{ESCAPED})++"
# hname / hvalue: hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNAME = rf"(?:[{UNRESERVED}\[\]/?:+$]++|{ESCAPED})++"
HVALUE = rf"(?:[{UNRESERVED}\[\]/?:+$]++|{ESCAPED})*+"
# hostname = *( domainlabel "." ) toplabel [ "." ]
# domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
# toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
DOMAINLABEL = r"[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+"
TOPLABEL = r"[A-Za-z][A-Za-z0-9]*+(?:-++[A-Za-z0-9]++)*+"
HOSTNAME = rf"(?:{DOMAINLABEL}\.)*{TOPLABEL}\.?"
# IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT, each at most 255
OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"
IPV4 = rf"{OCTET}(?:\.{OCTET}){{3}}"
# IPv6reference = "[" IPv6address "]": its shape here, its value checked by ipaddress.
IPV6_REFERENCE = r"\[[0-9A-Fa-f:.]+\]"
# host = hostname / IPv4address / IPv6reference; in a URI the IPv6 reference may
# carry a zone (RFC 6874, "%" ZoneID), left to ipaddress to judge.
HOST = rf"(?:{IPV6_REFERENCE}|{IPV4}|{HOSTNAME})"
URI_HOST = rf"(?:\[[0-9A-Fa-f:.]+(?:%[^\];?@]+)?\]|{IPV4}|{HOSTNAME})"
PORT = r"[0-9]{1,5}"
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
# uric (RFC 2396) for absoluteURI's opaque part, plus "%" for escapes.
URIC = r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,%\[\]#]"
# gen-value = token / host / quoted-string (host brings "[", "]" and ":")
GEN_VALUE = r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+"

# uri-parameter = transport-param / user-param / ... / other-param, all of the shape
# pname [ "=" pvalue ], pname = 1*paramchar, pvalue = 1*paramchar.  Groups: name, value.
URI_PARAM = rf";({PARAMCHARS})(?:=({PARAMCHARS}))?"
# header = hname "=" hvalue.  Groups: name, value.
URI_HEADER = rf"({HNAME})=({HVALUE})"
# SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]  (SIPS-URI: "sips:")
# userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
# uri-parameters = *( ";" uri-parameter ); headers = "?" header *( "&" header )
SIP_URI = (
    r"(?P<scheme>(?i:sips?)):"
    rf"(?:(?P<user>{USER})(?::(?P<password>{PASSWORD}))?@)?"
    rf"(?P<host>{URI_HOST})(?::(?P<port>{PORT}))?"
    rf"(?P<params>(?:{URI_PARAM})*)"
    rf"(?:\?(?P<headers>{URI_HEADER}(?:&{URI_HEADER})*))?"
)

# generic-param = token [ EQUAL gen-value ], after a SEMI (SEMI = SWS ";" SWS,
# EQUAL = SWS "=" SWS).  Groups: name, value.
GENERIC_PARAM = rf"{SWS};{SWS}({TOKEN})(?:{SWS}={SWS}({QUOTED_STRING}|{GEN_VALUE}))?"
GENERIC_PARAMS = rf"(?:{GENERIC_PARAM})*{SWS}"
# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
# sent-by = host [ COLON port ]  (SLASH = SWS "/" SWS, COLON = SWS ":" SWS)
VIA_PARM = (
    rf"{SWS}(?P<protocol>{TOKEN}){SWS}/{SWS}(?P<version>{TOKEN}){SWS}/{SWS}(?P<transport>{TOKEN})"
    rf"{LWS}(?P<host>{HOST})(?:{SWS}:{SWS}(?P<port>{PORT}))?"
    rf"(?P<params>{GENERIC_PARAMS})"
)
# From, To, Contact, Route...: ( name-addr / addr-spec ) *( SEMI generic-param )
# name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
# display-name = *(token LWS) / quoted-string
# An addr-spec outside <> ends at the first ";" (what follows are the header's
# parameters) and cannot hold "," or "?" (RFC 3261 section 20.10).  Matched on the
# stripped value; between the display name and <, any white space str.strip()
# would remove (\s) is let through.
NAME_ADDR = (
    rf"(?:(?:(?P<quoted>{QUOTED_STRING})|(?P<tokens>{TOKEN}(?:{LWS}{TOKEN})*))?\s*"
    r"<(?P<uri>[^>]*)>"
    r'|(?P<spec>[^;,?<>" \t]+))'
    rf"(?P<params>{GENERIC_PARAMS})"
)
# CSeq = 1*DIGIT LWS Method
CSEQ = rf"{SWS}([0-9]{{1,10}}){LWS}({TOKEN}){SWS}"
# media-type = m-type SLASH m-subtype *( SEMI m-parameter )
MEDIA_TYPE = rf"{SWS}({TOKEN}){SWS}/{SWS}({TOKEN})(?P<params>{GENERIC_PARAMS})"
