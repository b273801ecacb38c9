"""Kubernetes-style memory quantities, converted for APIs that want MiB (AWS Batch)."""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_BYTES = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def check_quantity(value: str, what: str) -> str:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise ValueError(f"{what}={value!r} is not a Kubernetes quantity such as '16Gi' or '4'")
    return value


def memory_mib(value: str, what: str = "memory") -> int:
    m = _QUANTITY.match(check_quantity(value, what))
    if m is None:  # unreachable after check_quantity; keeps the type checker honest
        raise ValueError(f"{what}={value!r} is not a quantity")
    mib = int(float(m.group(1)) * _BYTES[m.group(2)] // 2**20)
    if mib < 1:
        raise ValueError(f"{what}={value!r} is less than 1Mi")
    return mib
