"""Reading the files a `cdao` subcommand is given, as UTF-8 whatever the machine's locale.

JSON exchanged between systems is UTF-8 (RFC 8259 section 8.1), and Pulumi reads stack files as
UTF-8 YAML. A file in another encoding is bad input (exit 2) named with its path, never a
UnicodeDecodeError traceback: Windows PowerShell 5.1's `>` and `Out-File` write UTF-16 with a byte
order mark, so `pulumi stack output --json > outputs.json` there makes exactly such a file.
"""

from __future__ import annotations

import codecs
from pathlib import Path


class NotUtf8Error(ValueError):
    """A file is not UTF-8 text; the message names it, where decoding failed and how to rewrite it."""


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_utf8(data: bytes, name: str, *, strip_bom: bool = True) -> str:
    """`data` (the bytes of the file `name`) as text, line ends untouched.

    A leading UTF-8 byte order mark is dropped when `strip_bom` (RFC 8259 section 8.1 lets a JSON
    parser ignore it, and PowerShell's `Out-File -Encoding utf8` writes one); a caller that writes
    the file back keeps it. Raises NotUtf8Error naming `name`, the byte offset and, for a UTF-16
    file (a UTF-16 byte order mark), how to save it as UTF-8."""
    try:
        return data.decode("utf-8-sig" if strip_bom else "utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith(_UTF16_BOMS):
            how = (
                "it is UTF-16 (as Windows PowerShell 5.1's `>` writes): save it as UTF-8, e.g. "
                "`... | Out-File -Encoding utf8 <file>`, or redirect from cmd.exe or bash"
            )
        else:
            how = "save it as UTF-8"
        raise NotUtf8Error(f"{name}: not UTF-8 text (byte {exc.start}: {exc.reason}); {how}") from None


def read_utf8(path: Path, name: str | None = None, *, strip_bom: bool = True) -> str:
    """The text of the file at `path` (decode_utf8; `name` defaults to the path). OSError propagates."""
    return decode_utf8(Path(path).read_bytes(), name or str(path), strip_bom=strip_bom)
