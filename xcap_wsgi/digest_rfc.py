"""RFC 7616 Digest: the hash computations and the syntax of an ``Authorization`` header.

Pure functions, no WSGI and no state: ``digest.DigestAuthMiddleware`` uses them to check a
client's answer, and the tests use them to compute one.
"""

from __future__ import annotations

import hashlib
import re

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}


def H(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """RFC 7616 §3.4.2: H(username ":" realm ":" passwd)."""
    return H(algorithm, f"{username}:{realm}:{password}")


def compute_response(algorithm: str, ha1: str, nonce: str, nc: str, cnonce: str, qop: str,
                     method: str, uri: str) -> str:
    """RFC 7616 §3.4.1 with qop=auth: KD(HA1, nonce:nc:cnonce:qop:H(method:uri))."""
    ha2 = H(algorithm, f"{method}:{uri}")
    return H(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# -- Authorization header parsing --------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(?:,|$)', re.S)
#: ``uri="..."`` whose value holds raw ``"``: the value ends at the first ``"`` followed by the next
#: parameter (``, token=``) or by the end of the header.
_RAW_URI = re.compile(rf'\s*(uri)\s*=\s*"(.*?)"\s*(?:,(?=\s*{_TOKEN}\s*=)|$)', re.S | re.I)


class MalformedCredentials(ValueError):
    pass


def parse_auth_params(text: str) -> dict[str, str]:
    """``k=v, k="quoted \\" value"`` as a dict (lower-case keys); raise MalformedCredentials."""
    params: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _PARAM.match(text, position)
        if not match or match.end() == position:
            # A harmless client deviation we accept: xcaplib (urllib), curl -g and others copy the
            # request target verbatim into uri="...", unescaped quotes included, e.g.
            # uri="/xcap-root/.../~~/resource-lists/list[@name="friends"]". The value is kept exactly
            # as sent: the response hash covers it and _uri_matches still compares it with the request.
            raw = _RAW_URI.match(text, position)
            if raw is None or raw.end() == position:
                raise MalformedCredentials(f"malformed parameter at {text[position:position + 40]!r}")
            if "uri" in params:
                raise MalformedCredentials("duplicate parameter uri")
            params["uri"] = raw.group(2)
            position = raw.end()
            continue
        name = match.group(1).lower()
        value = match.group(3) if match.group(2) is None else re.sub(r"\\(.)", r"\1", match.group(2))
        if name in params:
            raise MalformedCredentials(f"duplicate parameter {name}")
        params[name] = value
        position = match.end()
    return params
