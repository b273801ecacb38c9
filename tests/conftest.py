"""Shared by every suite: botocore's data files read once per pytest process.

botocore reads endpoints.json (about 80 ms to decode) and each service model it needs once per
Session (``botocore.session.Session._register_data_loader`` makes a new ``botocore.loaders.Loader``,
whose cache is its own). The product makes one session per process; the suite makes hundreds in its
one process (a doctor run, a connector, a moto fixture each), and decoded those same files each
time. One loader, made the way botocore makes each, serves them all: the same files from the same
search path (no test sets ``AWS_DATA_PATH``), decoded once."""

from __future__ import annotations

import botocore.loaders
import botocore.session

_LOADER = botocore.loaders.create_loader()


def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    if search_path_string:  # a data path of its own: a loader of its own, as botocore makes it
        return botocore.loaders.create_loader(search_path_string)
    return _LOADER


botocore.session.create_loader = _shared_loader
