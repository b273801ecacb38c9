"""The commit a stack's deploy runs, which is also the tag of the images CI built for it.

deploy.yml builds the connector and task images once, in dev, as `cdao-dev-<purpose>:<commit>`, and
copies them by that tag into staging's and prod's own registries (docs/github-setup.md, "Images built
once, promoted by tag"). So the tag a stack's connector Deployment must run is the commit of its
revision:

- a pinned stack (`cdao:gitops.revision` is a full commit SHA, as infra/config.py demands in staging
  and prod) runs that commit;
- a stack that follows a branch (dev: `main`) runs the commit its deploy resolved the branch to. The
  program cannot know it from the stack file, so the deploy hands it over in the environment variable
  CDAO_REVISION_COMMIT (deploy.yml: `needs.resolve.outputs.<stack>-revision`, the commit it checked
  out; first-deploy.sh: the same resolution). The Python language host starts the program with its
  own environment plus PULUMI_CONFIG (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go,
  `Run`: `cmd.Env = append(os.Environ(), ...)`, seen at commit 0064624b), so a workflow step's `env:`
  reaches it, and the value is the same at `preview --save-plan` and `up --plan`.

One run is different: a stack's first `pulumi up` (first-deploy.sh) creates the registry its images
go to, so they cannot be there yet, and EMR Serverless refuses an application whose image it cannot
pull. That run says so with CDAO_IMAGES_PUSHED=false; the Spark application is then created on AWS's
own image, and the deploy first-deploy.sh dispatches pushes the images before its `up` sets the
application's image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from infra.config import NAMESPACE, StackConfig

REVISION_COMMIT_ENV = "CDAO_REVISION_COMMIT"
IMAGES_PUSHED_ENV = "CDAO_IMAGES_PUSHED"
FULL_SHA = re.compile(r"[0-9a-f]{40}")


class RevisionCommitError(ValueError):
    """The commit the stack runs cannot be known, or contradicts its pin; the message says which."""


def revision_commit(config: StackConfig, environ: Mapping[str, str]) -> str:
    """The 40-hex commit `config`'s stack runs: the image tag of its connector (and tasks) image.

    Raises RevisionCommitError when the revision is a branch and CDAO_REVISION_COMMIT is unset or not
    a full commit SHA, or when the revision is a commit and CDAO_REVISION_COMMIT names another one.
    """
    revision = config.gitops.revision
    given = environ.get(REVISION_COMMIT_ENV, "")
    where = f"stack {config.stack!r}: {NAMESPACE}:gitops.revision = {revision!r}"
    if FULL_SHA.fullmatch(revision):
        if given and given != revision:
            raise RevisionCommitError(
                f"{where}, but {REVISION_COMMIT_ENV}={given!r}: a deploy runs the pinned commit and nothing else"
            )
        return revision
    if not given:
        raise RevisionCommitError(
            f"{where} is a branch, so the image tag (the commit it resolved to) must come from "
            f"{REVISION_COMMIT_ENV}: set it to the full 40-digit commit of {revision!r} whose images CI built "
            "(deploy.yml and first-deploy.sh do)"
        )
    if not FULL_SHA.fullmatch(given):
        raise RevisionCommitError(f"{where}: {REVISION_COMMIT_ENV}={given!r}: expected a full 40-digit commit SHA")
    return given


def images_pushed(environ: Mapping[str, str]) -> bool:
    """Whether the stack's registry holds the images of its revision commit: CDAO_IMAGES_PUSHED is
    unset or "true" (every deploy.yml run: image-<stack> precedes apply-<stack>), or "false"
    (first-deploy.sh's first `up`, which creates the registry). RevisionCommitError for any other value.
    """
    value = environ.get(IMAGES_PUSHED_ENV, "true")
    if value not in ("true", "false"):
        raise RevisionCommitError(
            f"{IMAGES_PUSHED_ENV}={value!r}: expected 'true' or 'false' (only a stack's first `pulumi up`, "
            "which creates its registry, runs with 'false')"
        )
    return value == "true"
