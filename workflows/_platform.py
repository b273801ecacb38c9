"""What the pipelines share: the project and domains they register to, content hashes for
caching, and the task's scratch directory.

The SDK reads a stack's AWS values (region, SageMaker role, bucket) when a workflow is registered,
from ``CDAO_AWS_REGION``, ``CDAO_SAGEMAKER_ROLE_ARN`` and ``CDAO_DEFAULT_BUCKET`` (CI exports the
stack's); ``pyflyte run`` on a laptop needs none of them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import flytekit
from cdao_sdk import settings

PROJECT = "ml-experiments"
DOMAINS = ("development", "staging", "production")


def target_domain() -> str:
    """The Flyte domain being registered to (CI exports FLYTE_DOMAIN), else the SDK's domain."""
    domain = os.environ.get("FLYTE_DOMAIN") or settings.get("domain") or "development"
    if domain not in DOMAINS:
        raise ValueError(f"Flyte domain {domain!r} is not one of this project's domains {DOMAINS}")
    return domain


def file_sha256(file: object) -> str:
    """Content hash of a task's output file or directory, so cached steps downstream key on the data.

    Flyte gives every output a fresh random path; hashing the path would never hit the cache, and
    caching on an input *location* (an s3:// path re-filled nightly) would serve stale results.
    """
    root = Path(getattr(file, "path", file))  # type: ignore[arg-type]
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root) if root.is_dir() else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def work_dir() -> Path:
    """The task's scratch directory: outputs written here never litter the caller's working directory."""
    return Path(flytekit.current_context().working_directory)
