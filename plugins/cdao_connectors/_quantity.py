"""Kubernetes resource quantities: checked against the grammar Kubernetes documents, converted to
MiB for APIs that want it (AWS Batch).

The grammar is apimachinery's ``resource.Quantity`` (k8s.io/apimachinery pkg/api/resource/quantity.go)::

    <quantity>        ::= <signedNumber><suffix>
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <signedNumber>    ::= <number> | <sign><number>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>

The value comes from the Kubernetes Python client's ``kubernetes.utils.parse_quantity``, which is
more lenient than the grammar (it takes ``1K``, ``NaN``, surrounding spaces), hence the check first.
"""

from __future__ import annotations

import re
from decimal import Decimal

from kubernetes.utils import parse_quantity

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# quantity.go parses the exponent of <decimalExponent> as an integer.
_QUANTITY = re.compile(rf"[+-]?{_NUMBER}(?:Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|m|k|M|G|T|P|E)?")


def quantity_value(value: str, what: str) -> Decimal:
    """``value`` as a number (cores, bytes); ``ValueError`` naming ``what`` unless it is a quantity > 0."""
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ValueError(f"{what}={value!r} is not a Kubernetes quantity such as '16Gi', '4' or '500m'")
    number = parse_quantity(value)
    if number <= 0:
        raise ValueError(f"{what}={value!r} must be greater than 0")
    return number


def check_quantity(value: str, what: str) -> str:
    quantity_value(value, what)
    return value


def memory_mib(value: str, what: str = "memory") -> int:
    mib = int(quantity_value(value, what) // 2**20)
    if mib < 1:
        raise ValueError(f"{what}={value!r} is less than 1Mi")
    return mib
