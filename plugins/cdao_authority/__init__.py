"""``host[:port]``: the one grammar of a network endpoint a user types, shared by ``cdao_sdk.configure``
(its ``admin_endpoint`` and ``mlflow_tracking_uri``) and ``cdao doctor`` (``--connector-endpoint``,
the ``flyteEndpoint`` output).

It is RFC 3986 section 3.2's authority without user information:

- ``host``: a DNS name of RFC 1123 section 2.1 labels (letters, digits and inner hyphens, 1-63
  characters each, at most 253 in all, RFC 1035 section 2.3.4; a label may start with a digit; an
  optional root dot), an IPv4 dotted quad, or an IPv6 address in brackets (RFC 3986 section 3.2.2
  IP-literal, whose IPv6address has no zone identifier). A name's last label is never a number:
  "at least the highest-level component label will be alphabetic" (RFC 1123 section 2.1), and
  resolvers (inet_aton) and URL parsers read ``127.1`` or ``0x7f.1`` as an IPv4 address (the URL
  Standard's "ends in a number checker": all ASCII digits, or ``0x`` and hex digits,
  https://url.spec.whatwg.org/#ends-in-a-number-checker). The addresses are read by the standard
  library's ``ipaddress``.
- ``port``: ASCII digits (RFC 3986 section 3.2.3), naming a TCP destination port 1-65535.

That is the ``host:port`` a gRPC target takes with its default ``dns`` resolver
(https://github.com/grpc/grpc/blob/master/doc/naming.md).

Hand-written, standard library only, so the SDK (a notebook's install) and the CLI import it without
depending on each other: ``urllib.parse.urlsplit`` takes any character in a host (``local_host!;rm``,
spaces, empty labels, a path after the port), and ``str.isdigit`` takes any script's digits (``٨٠``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# One label of RFC 1123 section 2.1 (ASCII letters and digits; a hyphen only inside).
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# A name's text without its root dot: RFC 1035 section 2.3.4's 255 octets of the wire format, less the
# first label's length octet and the root's zero octet (RFC 1123 section 2.1 keeps that limit).
_MAX_NAME_LENGTH = 253
# An IP-literal, or a run without the characters that end or split an authority, then an optional port.
_AUTHORITY = re.compile(r"(\[[^\]/?#]*\]|[^:\[\]/?#]+)(?::([^:/?#]*))?")
# The URL Standard's numbers (decimal, or 0x and hex digits; octal's leading 0 is decimal digits too).
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_PORT = re.compile(r"[0-9]+")  # ASCII only: `re`'s \d would take every script's digits
MAX_PORT = 65535


class AuthorityError(ValueError):
    """``str(error)`` says what is wrong with the ``host[:port]`` text, e.g. ``port 0 is outside 1-65535``;
    the caller puts the argument or option it came from in front."""


@dataclass(frozen=True)
class HostPort:
    """A checked authority: ``host`` as written (an IPv6 address keeps its brackets), ``port`` or None."""

    host: str
    port: int | None


def parse_authority(text: str, *, port_required: bool = False) -> HostPort:
    """``text`` (``host[:port]``, or ``host:port`` when ``port_required``) as a :class:`HostPort`.

    Raises :class:`AuthorityError` naming the first problem: whitespace, user information
    (``user@``), text that is not of the form at all (an empty host or port, an unbracketed IPv6
    address, a second ``:port``, a path, query or fragment), a missing port when required, a port
    that is not ASCII digits or is outside 1-65535, or a host that is not a DNS name, an IPv4
    address or a bracketed IPv6 address."""
    form = "host:port" if port_required else "host[:port]"
    if re.search(r"\s", text):
        raise AuthorityError("contains whitespace")
    if "@" in text:
        raise AuthorityError(f"holds user information (user@), which {form} never carries")
    parts = _AUTHORITY.fullmatch(text)
    if parts is None or parts.group(2) == "":
        raise AuthorityError(f"not {form}")
    host, port_text = parts.groups()
    if port_text is None and port_required:
        raise AuthorityError("has no port")
    port = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text):
            raise AuthorityError(f"port {port_text!r} is not a number")
        # Five digits at most before int(): Python refuses to parse over 4,300 digits (a plain
        # ValueError), and nothing that long is a port.
        if len(port_text) > len(str(MAX_PORT)) or not 1 <= int(port_text) <= MAX_PORT:
            raise AuthorityError(
                f"port {port_text if len(port_text) <= 10 else port_text[:10] + '...'} is outside 1-{MAX_PORT}"
            )
        port = int(port_text)
    if not _is_host(host):
        raise AuthorityError(
            f"host {host!r} is not a DNS name (RFC 1123: letters, digits and inner hyphens, dot-separated, "
            "the last label not a number), an IPv4 address or a bracketed IPv6 address (without a zone)"
        )
    return HostPort(host, port)


def _is_host(host: str) -> bool:
    """Whether ``host`` is a DNS name, an IPv4 address or a bracketed IPv6 address (the module's grammar)."""
    if host.startswith("[") and host.endswith("]"):
        if "%" in host:  # ipaddress takes a zone identifier (fe80::1%eth0), RFC 3986's grammar does not
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    try:
        ipaddress.IPv4Address(host)  # dotted-decimal only: no 127.1, no leading zeros
    except ValueError:
        pass  # a name, if anything: whose last label is never a number, so never 999.1.1.1 either
    else:
        return True
    name = host.removesuffix(".")
    labels = name.split(".")
    return (
        len(name) <= _MAX_NAME_LENGTH
        and all(_DNS_LABEL.fullmatch(label) for label in labels)
        and not _NUMBER.fullmatch(labels[-1])
    )


__all__ = ["MAX_PORT", "AuthorityError", "HostPort", "parse_authority"]
