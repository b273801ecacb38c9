"""Pulumi entry point (`main: infra/` in Pulumi.yaml): parse the stack's config, then build."""

import os

import pulumi

from infra.config import ConfigError, load_stack_config
from infra.images import RevisionCommitError, images_pushed, revision_commit
from infra.program import build

try:
    config, secrets = load_stack_config()
    commit = revision_commit(config, os.environ)
    pushed = images_pushed(os.environ)
except (ConfigError, RevisionCommitError) as exc:
    # RunError prints the message without a Python traceback: the message already names the key.
    raise pulumi.RunError(str(exc)) from None

build(config, secrets, revision_commit=commit, images_pushed=pushed)
