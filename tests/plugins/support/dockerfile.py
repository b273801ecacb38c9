"""The stages of plugins/Dockerfile, which builds both images (targets `connector` and `tasks`)."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[3] / "plugins" / "Dockerfile"


def stages(text: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """Stage name (`AS <name>`, or its index) -> its (INSTRUCTION, arguments), line continuations
    joined and comments dropped; the instructions before the first FROM are under ``""``."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text() if text is None else text)
    out: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z]+)\s+(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        instruction, args = m.group(1).upper(), m.group(2).strip()
        if instruction == "FROM":
            name = re.search(r"\bAS\s+(\S+)$", args, re.IGNORECASE)
            current = name.group(1) if name else str(len(out))
            out[current] = []
        out[current].append((instruction, args))
    return out


def base(stage: list[tuple[str, str]]) -> str:
    """The image or stage a stage starts FROM."""
    return stage[0][1].split()[0]
