"""Code registered the way CI registers it (`pyflyte register --copy auto`) is readable by its tasks.

flyteadmin's data proxy writes the upload to `<storage container>/<storagePrefix>/<project>/<domain>/
<hash or filename root>/<file>` (flyteorg/flyte v1.16.8 flyteadmin/dataproxy/service.go
createStorageLocation: empty key parts such as the open-source org are dropped; the container is
flyteadmin's `storage` container, which flyte-core renders from `storage.bucketName`).
`storagePrefix` is `server.dataProxy.upload.storagePrefix` of flyteadmin's config, empty by default
(flyteadmin/pkg/config/config.go at v1.16.8); flyte-core v1.16.8 writes `configmap.adminServer` as
flyteadmin's server.yaml (charts/flyte-core/templates/admin/configmap.yaml). The task pod downloads
the archive with its project-domain's IRSA role, flyteadmin signs the upload with its own.
"""

from __future__ import annotations

import json
import re

import pytest
from platform_checks import rendered

from cdao_cli.plan.runner import PlanRun
from infra.contract import FAST_REGISTER_PREFIX, FLYTE_DOMAINS
from tests.infra import plans

STACK = "dev"


def _at(values: dict, dotted: str):
    for key in dotted.split("."):
        values = values[key]
    return values


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _allows(run: PlanRun, policy_name: str, action: str, resource: str) -> bool:
    (policy,) = [p for p in run.registrations if p.type == "aws:iam/rolePolicy:RolePolicy" and p.name == policy_name]
    statements = json.loads(policy.inputs["policy"])["Statement"]
    return any(
        s["Effect"] == "Allow"
        and not s.get("Condition")
        and any(_like(a, action) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
        and any(_like(r, resource) for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]))
        for s in statements
    )


def _upload_key(storage_prefix: str, project: str, domain: str) -> str:
    # createStorageLocation(ctx, store, cfg.Upload, org, project, domain, root, filename) with org "".
    parts = [storage_prefix, "", project, domain, "2ZBDWGB5ENXDVXQYRNMOLO3GLE", "fastabcdef.tar.gz"]
    return "/".join(p for p in parts if p)


@pytest.fixture(scope="module")
def planned() -> PlanRun:
    return plans.planned(STACK)


def test_flyteadmin_uploads_under_the_prefix_of_the_metadata_bucket():
    _source, values = rendered(STACK)["flyte"].charts["flyte-core"]
    assert _at(values, "configmap.adminServer.server.dataProxy.upload.storagePrefix") == FAST_REGISTER_PREFIX
    # The data proxy's container is flyteadmin's storage container: the metadata bucket.
    assert _at(values, "storage.bucketName").startswith(f"cdao-{STACK}-metadata")


def test_each_task_role_reads_its_own_fast_registered_code_only(planned):
    annotations = next(
        r.inputs["metadata"]["annotations"]
        for r in planned.registrations
        if r.type == "kubernetes:core/v1:Secret" and (r.inputs["metadata"].get("labels") or {}).get("environment")
    )
    bucket = annotations["cdao.io/bucket-metadata"]
    prefix = annotations["cdao.io/fast-register-prefix"]
    assert prefix == FAST_REGISTER_PREFIX
    for project in planned.config.flyte.projects:
        for domain in FLYTE_DOMAINS:
            key = f"arn:aws:s3:::{bucket}/{_upload_key(prefix, project, domain)}"
            assert _allows(planned, "workload-identity-flyteadmin", "s3:PutObject", key), key
            own = f"workload-identity-flyte-tasks-{project}-{domain}"
            assert _allows(planned, own, "s3:GetObject", key), f"{own} cannot read {key}"
            for other in FLYTE_DOMAINS:
                if other != domain:
                    theirs = f"workload-identity-flyte-tasks-{project}-{other}"
                    assert not _allows(planned, theirs, "s3:GetObject", key), f"{theirs} reads {key}"
