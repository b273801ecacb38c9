"""Settings every pipeline module needs before its tasks are decorated.

The SageMaker decorators read the execution role, region and bucket when a module is imported.
Registration (CI) must use the stack's real values, given as the SDK's environment variables
(``CDAO_SAGEMAKER_ROLE_ARN``, ``CDAO_AWS_REGION``, ``CDAO_DEFAULT_BUCKET``, optionally
``CDAO_DEFAULT_IMAGE``). A laptop run never calls AWS (task bodies run in-process), so there a
clearly fake local value fills any gap; registering to a domain with a fake value is refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import flytekit
from cdao_sdk import settings

PROJECT = "ml-experiments"
DOMAINS = ("development", "staging", "production")

# Account 000000000000 does not exist: a local value can never reach a real AWS resource.
_LOCAL_FALLBACKS = {
    "region": "us-east-1",
    "sagemaker_role": "arn:aws:iam::000000000000:role/cdao-local-sagemaker-exec",
    "default_bucket": "cdao-local-ml-artifacts",
}
_ENV_NAMES = {
    "region": "CDAO_AWS_REGION",
    "sagemaker_role": "CDAO_SAGEMAKER_ROLE_ARN",
    "default_bucket": "CDAO_DEFAULT_BUCKET",
}

# SageMaker jobs run the image the workflows are registered with (`pyflyte register --image`);
# flytekit fills this placeholder at serialisation, and uses its default image locally.
REGISTERED_IMAGE = "{{.image.default.fqn}}:{{.image.default.version}}"


def target_domain() -> str:
    """The Flyte domain being registered to (CI exports FLYTE_DOMAIN), else the SDK's domain."""
    domain = os.environ.get("FLYTE_DOMAIN") or settings.get("domain") or "development"
    if domain not in DOMAINS:
        raise ValueError(f"Flyte domain {domain!r} is not one of this project's domains {DOMAINS}")
    return domain


def registering() -> bool:
    return bool(os.environ.get("FLYTE_DOMAIN"))


def ensure_settings() -> None:
    """Fill the SDK settings the decorators need; refuse fake values when registering to a domain."""
    missing = {name: value for name, value in _LOCAL_FALLBACKS.items() if not settings.get(name)}
    if missing and registering():
        names = ", ".join(sorted(_ENV_NAMES[n] for n in missing))
        raise RuntimeError(
            f"registering workflows/ to domain {os.environ['FLYTE_DOMAIN']!r} needs the stack's real values: "
            f"set {names} (the local placeholders would register jobs that cannot run)"
        )
    if missing:
        settings.update(**missing)


def managed_image() -> str:
    return settings.get("default_image") or REGISTERED_IMAGE


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
