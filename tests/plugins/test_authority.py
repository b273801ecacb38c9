"""One `host:port` grammar for every endpoint a user types: `cdao_sdk.configure`'s admin endpoint and
MLflow tracking URI, and `cdao doctor --connector-endpoint`, all read by `cdao_authority`.

The grammar: a host is an RFC 1123 section 2.1 DNS name (letters, digits and inner hyphens, labels of
1-63 characters, at most 253 in all), an IPv4 dotted quad, or an IPv6 address in brackets (RFC 3986
section 3.2.2 IP-literal); a port is ASCII digits (RFC 3986 section 3.2.3) naming a TCP port 1-65535.
gRPC targets of this form are what grpc/grpc doc/naming.md calls `host:port` with the default `dns`
resolver. Each table row runs against every caller, so the callers cannot drift apart again.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator

import cdao_sdk
import pytest
from cdao_sdk import settings

from cdao_cli import doctor

# (host:port, what the message must say is wrong). Every value carries a port, which the doctor needs.
MALFORMED: list[tuple[str, str]] = [
    ("fl yte.example.com:8000", "whitespace"),
    ("flyte.example.com:8000 ", "whitespace"),
    ("flyte.example.com:\t8000", "whitespace"),
    # RFC 1123 2.1: labels are 1-63 letters, digits and inner hyphens.
    ("flyte..example.com:8000", "host 'flyte..example.com' is not"),
    (".example.com:8000", "host '.example.com' is not"),
    (f"{'a' * 64}.example.com:8000", f"host '{'a' * 64}.example.com' is not"),
    (f"{'a.' * 127}a:8000", "host 'a.a.a"),  # 255 characters: over RFC 1123's 253 (RFC 1035 2.3.4)
    ("cdao_connector.flyte:8000", "host 'cdao_connector.flyte' is not"),
    ("-flyte.example.com:8000", "host '-flyte.example.com' is not"),
    ("flyte-.example.com:8000", "host 'flyte-.example.com' is not"),
    ("flyté.example.com:8000", "host 'flyté.example.com' is not"),
    ("local_host!:8000", "host 'local_host!' is not"),
    # Digits and dots only are an IPv4 address, never a name.
    ("999.1.1.1:8000", "host '999.1.1.1' is not"),
    ("10.0.0:8000", "host '10.0.0' is not"),
    # A name whose last label is a number is read as an IPv4 address by inet_aton (127.1, 0x7f.1) and
    # by URL parsers (WHATWG URL "ends in a number"); RFC 1123 2.1: the top label is alphabetic.
    ("0x7f.1:8000", "host '0x7f.1' is not"),
    ("flyte.0x7f:8000", "host 'flyte.0x7f' is not"),
    ("flyte.123.:8000", "host 'flyte.123.' is not"),
    # RFC 3986 3.2.2: an IPv6 address only in brackets, and only an IPv6 address in them.
    ("::1:8000", "not host"),
    ("[::1:8000", "not host"),
    ("[::g]:8000", r"host '\[::g\]' is not"),
    ("[10.0.0.1]:8000", r"host '\[10.0.0.1\]' is not"),
    ("[fe80::1%eth0]:8000", r"host '\[fe80::1%eth0\]' is not"),  # RFC 3986's IPv6address has no zone
    ("host:8000:9000", "not host"),
    (":8000", "not host"),
    ("", "not host"),
    ("user@flyte.example.com:8000", "user information"),
    ("flyte.example.com:8000/path", "not host"),
    ("flyte.example.com:8000?q=1", "not host"),
    # RFC 3986 3.2.3: a port is ASCII digits; a TCP port is 1-65535.
    ("flyte.example.com:+80", "port '\\+80' is not a number"),
    ("flyte.example.com:-80", "port '-80' is not a number"),
    ("flyte.example.com:\u0668\u0660", "port '\u0668\u0660' is not a number"),  # ARABIC-INDIC EIGHT, ZERO
    ("flyte.example.com:8_000", "port '8_000' is not a number"),
    ("flyte.example.com:http", "port 'http' is not a number"),
    ("flyte.example.com:0", "port 0 is outside 1-65535"),
    ("flyte.example.com:65536", "port 65536 is outside 1-65535"),
    # Past 4,300 digits Python's int() itself refuses, with a ValueError naming no argument.
    ("flyte.example.com:" + "9" * 5000, r"port 9999999999\.\.\. is outside 1-65535"),
    ("flyte.example.com:", "not host"),
]

WELL_FORMED = [
    "127.0.0.1:8000",
    "localhost:1",
    "[::1]:8000",
    "[2001:db8::8a2e:370:7334]:65535",
    "cdao-connector.flyte.svc.cluster.local:8000",
    "3com.example.com:443",  # RFC 1123 2.1: a label may start with a digit
    "123.example.com:443",  # a number, but not the top label
    "flyte.example.com.:443",  # a fully qualified name's root label
    "Flyte.Example.COM:443",
    f"{'a' * 63}.example.com:443",
    "flyte.example.com:08000",  # RFC 3986 3.2.3: leading zeros are digits too
]


def _doctor(value: str) -> str:
    """What `cdao doctor --connector-endpoint value` keeps, or SystemExit(2) as argparse exits."""
    parser = argparse.ArgumentParser(prog="cdao doctor")
    doctor.add_arguments(parser)
    # `--option=value`: argparse reads a separate value that starts with "-" as another option.
    args = parser.parse_args(["--stack", "dev", "--outputs", "o.json", f"--connector-endpoint={value}"])
    return args.connector_endpoint


def _configure(value: str) -> str:
    return cdao_sdk.configure(value, "ml").config.platform.endpoint


def _mlflow(value: str) -> str:
    cdao_sdk.configure("flyte.example.com", "ml", mlflow_tracking_uri=f"http://{value}/", remote=object())
    return settings.get("mlflow_tracking_uri").removeprefix("http://").removesuffix("/")


CALLERS: dict[str, Callable[[str], str]] = {"doctor": _doctor, "configure": _configure, "mlflow": _mlflow}


@pytest.fixture(autouse=True)
def clean_settings() -> Iterator[None]:
    settings.reset()
    cdao_sdk.client._remote = None
    yield
    settings.reset()
    cdao_sdk.client._remote = None


@pytest.mark.parametrize(("value", "reason"), MALFORMED)
def test_doctor_refuses_a_malformed_connector_endpoint_naming_the_flag_and_value(
    capsys: pytest.CaptureFixture[str], value: str, reason: str
):
    with pytest.raises(SystemExit) as exited:
        _doctor(value)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert re.search(rf"argument --connector-endpoint: {re.escape(repr(value))}: .*{reason}", err), err


@pytest.mark.parametrize(("value", "reason"), MALFORMED)
def test_configure_refuses_a_malformed_admin_endpoint_naming_the_argument_and_value(value: str, reason: str):
    with pytest.raises(ValueError, match=rf"configure admin_endpoint={re.escape(repr(value))}: .*{reason}"):
        cdao_sdk.configure(value, "ml", remote=object())
    assert settings.get("admin_endpoint") is None  # nothing half-recorded


@pytest.mark.parametrize(("value", "reason"), [(v, r) for v, r in MALFORMED if not re.search(r"[/?@\s]", v)])
def test_configure_refuses_a_malformed_mlflow_tracking_uri_host_port(value: str, reason: str):
    uri = f"http://{value}/"
    with pytest.raises(ValueError, match=rf"configure mlflow_tracking_uri={re.escape(repr(uri))}: .*{reason}"):
        cdao_sdk.configure("flyte.example.com", "ml", mlflow_tracking_uri=uri, remote=object())
    assert settings.get("admin_endpoint") is None


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("value", WELL_FORMED)
def test_every_caller_takes_a_well_formed_host_port_as_given(caller: str, value: str):
    assert CALLERS[caller](value) == value


def test_only_the_doctor_needs_the_port(capsys: pytest.CaptureFixture[str]):
    """The SDK's admin endpoint may leave the port to gRPC's default for its scheme; the doctor dials
    the connector service's target as typed, which has no default port."""
    assert _configure("flyte.example.com") == "flyte.example.com"
    with pytest.raises(SystemExit):
        _doctor("flyte.example.com")
    assert "argument --connector-endpoint: 'flyte.example.com': has no port" in capsys.readouterr().err
