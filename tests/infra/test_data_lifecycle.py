"""The state-holding resources across their whole life: create, upgrade, replicate, tear down.

Sources: pulumi_aws's rds.Instance docstrings (engine_version prefixes, final snapshots) and
hashicorp/terraform-provider-aws internal/service/rds/engine_version.go `compareActualEngineVersion`
(a configured prefix of the running version is not a diff; anything else is set back); the S3
replication docs and pulumi-aws's BucketReplicationConfig example (versioning before replication);
Argo CD's app-deletion and ApplicationSet deletion docs.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

import cdao_stacks
from cdao_cli.plan.replacements import FORCE_NEW_INPUTS
from cdao_cli.plan.runner import PlanRun, read_stack_file
from infra.config import ConfigError, parse_stack_config

APPSETS = Path(__file__).resolve().parents[2] / "platform" / "bootstrap" / "appsets"


def _of_type(run: PlanRun, typ: str):
    return [r for r in run.registrations if r.type == typ]


def _waits_for(run: PlanRun, urn: str) -> set[str]:
    direct = {r.urn: r.dependencies for r in run.registrations}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        for dep in direct.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _raw(stack: str, **overrides) -> dict:
    raw, _ = read_stack_file(stack)
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        raw.setdefault(f"cdao:{section}", {})[field] = value
    return raw


# -- fault 4: the engine's major is pinned, minors follow AWS ----------------------------------------


def test_database_pins_only_the_engine_major(stack_run: PlanRun):
    (db,) = _of_type(stack_run, "aws:rds/instance:Instance")
    assert re.fullmatch(r"\d+", db.inputs["engineVersion"])
    assert db.inputs["autoMinorVersionUpgrade"] is True
    (params,) = _of_type(stack_run, "aws:rds/parameterGroup:ParameterGroup")
    assert params.inputs["family"] == f"postgres{db.inputs['engineVersion']}"


def test_a_minor_pin_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as err:
        parse_stack_config("staging", _raw("staging", **{"database.engineVersion": "16.8"}))
    assert err.value.keys == ["cdao:database.engineVersion"]
    assert "major" in str(err.value)


def test_major_upgrades_happen_only_when_asked_for(plan_of):
    (db,) = _of_type(plan_of("prod"), "aws:rds/instance:Instance")
    assert db.inputs["allowMajorVersionUpgrade"] is False
    config, _ = parse_stack_config(
        "prod", _raw("prod", **{"database.engineVersion": "17", "database.allowMajorVersionUpgrade": True})
    )
    assert config.database.allow_major_version_upgrade is True


# -- fault 5: replication waits for versioning on both sides ------------------------------------------


def test_replication_waits_for_versioning_of_source_and_replica(plan_of):
    run = plan_of("prod")
    versioning = {r.name: r.urn for r in _of_type(run, "aws:s3/bucketVersioning:BucketVersioning")}
    configs = _of_type(run, "aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    assert len(configs) == 3
    for config in configs:
        purpose = config.name.removeprefix("data-").removesuffix("-replication")
        waits = _waits_for(run, config.urn)
        assert versioning[f"data-{purpose}"] in waits, config.name
        assert versioning[f"data-{purpose}-replica"] in waits, config.name


# -- faults 6 and 12: dev tears down in one command, nothing else loses data --------------------------


def test_dev_tears_down_in_one_command(plan_of):
    run = plan_of("dev")
    (db,) = _of_type(run, "aws:rds/instance:Instance")
    assert db.inputs["deletionProtection"] is False and db.inputs["skipFinalSnapshot"] is True
    assert all(b.inputs["forceDestroy"] for b in _of_type(run, "aws:s3/bucket:Bucket"))
    assert all(v.inputs["forceDestroy"] for v in _of_type(run, "aws:backup/vault:Vault"))
    assert all(r.inputs["forceDelete"] for r in _of_type(run, "aws:ecr/repository:Repository"))


@pytest.mark.parametrize("stack", [s.name for s in cdao_stacks.load().stacks if not s.entry.destroyable])
def test_other_stacks_keep_their_data_on_teardown(plan_of, stack):
    run = plan_of(stack)
    (db,) = _of_type(run, "aws:rds/instance:Instance")
    assert db.inputs["skipFinalSnapshot"] is False
    assert not any(b.inputs.get("forceDestroy") for b in _of_type(run, "aws:s3/bucket:Bucket"))
    assert not any(v.inputs.get("forceDestroy") for v in _of_type(run, "aws:backup/vault:Vault"))
    if stack == "prod":
        assert not any(r.inputs.get("forceDelete") for r in _of_type(run, "aws:ecr/repository:Repository"))


def test_lifting_deletion_protection_keeps_the_final_snapshot():
    """Tearing staging down means lifting deletionProtection; the final snapshot must still be taken."""
    config, _ = parse_stack_config("staging", _raw("staging", **{"database.deletionProtection": False}))
    assert config.database.skip_final_snapshot is False


@pytest.mark.parametrize(
    ("stack", "key", "value"),
    [
        ("staging", "database.skipFinalSnapshot", True),
        ("prod", "storage.forceDestroy", True),
    ],
)
def test_data_losing_teardown_is_refused_outside_dev(stack, key, value):
    with pytest.raises(ConfigError) as err:
        parse_stack_config(stack, _raw(stack, **{key: value, "database.deletionProtection": False}))
    assert f"cdao:{key}" in err.value.keys


def test_final_snapshot_identifiers_differ_between_incarnations(stack_run: PlanRun):
    """A fixed identifier collides with the previous teardown's snapshot (DBSnapshotAlreadyExists):
    the identifier carries a random suffix created with the instance."""
    (db,) = _of_type(stack_run, "aws:rds/instance:Instance")
    if db.inputs["skipFinalSnapshot"]:
        return
    (suffix,) = _of_type(stack_run, "random:index/randomId:RandomId")
    identifier = db.inputs["finalSnapshotIdentifier"]
    assert identifier.endswith(f"-{suffix.outputs['hex']}")
    # RDS: starts with a letter, letters/digits/hyphens, no "--", no trailing hyphen, at most 255.
    assert re.fullmatch(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,253}[A-Za-z0-9]", identifier)


def test_final_snapshot_suffix_is_redrawn_by_every_input_that_replaces_the_instance(stack_run: PlanRun):
    """A replacement reuses the old instance's final_snapshot_identifier unless the suffix changes
    with it: the new instance's teardown then fails with DBSnapshotAlreadyExists. The suffix's
    keepers carry every replace-forcing input (cdao_cli/plan/replacements.py, from terraform-provider-aws
    internal/service/rds/instance.go) the program sets, with the same value."""
    (db,) = _of_type(stack_run, "aws:rds/instance:Instance")
    if db.inputs["skipFinalSnapshot"]:
        return
    (suffix,) = _of_type(stack_run, "random:index/randomId:RandomId")
    forcing = {k: db.inputs[k] for k in FORCE_NEW_INPUTS["aws:rds/instance:Instance"] if k in db.inputs}
    assert {"identifierPrefix", "kmsKeyId", "storageEncrypted", "engine"} <= set(forcing)
    keepers = suffix.inputs["keepers"]
    assert {k: keepers.get(k) for k in forcing} == {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in forcing.items()
    }


def test_root_application_cascades_so_the_alb_goes_before_the_vpc(plan_of):
    """Without Argo CD's resources finalizer, deleting the root orphans every add-on, including
    Flyte's Ingress, whose ALB then blocks deleting the VPC
    (https://argo-cd.readthedocs.io/en/stable/user-guide/app_deletion/). Applications generated
    by an ApplicationSet get the finalizer unless preserveResourcesOnDeletion is true
    (https://argo-cd.readthedocs.io/en/stable/operator-manual/applicationset/Application-Deletion/)."""
    (root,) = [
        r for r in _of_type(plan_of("dev"), "kubernetes:argoproj.io/v1alpha1:Application") if r.name == "gitops-root"
    ]
    assert root.inputs["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    # The add-ons whose objects make AWS load balancers in the VPC (Ingresses of class alb). The
    # load-balancer controller itself owns none: it keeps its resources when its Application goes
    # (preserveResourcesOnDeletion, so TargetGroupBindings survive switching it off), and so it is
    # still running to delete the ALBs of the Ingresses the cascade removes.
    for addon in ("flyte", "mlflow"):
        appsets = [d for d in yaml.safe_load_all((APPSETS / f"{addon}.yaml").read_text()) if d]
        assert appsets
        for appset in appsets:
            assert not (appset["spec"].get("syncPolicy") or {}).get("preserveResourcesOnDeletion"), addon


# Resources whose deletion loses data: the database, the shared file system, the buckets (and their
# replicas), the Backup vaults, and the keys that encrypt them. A key outlives its stack's teardown:
# the RDS final snapshot and RDS recovery points stay encrypted under the source instance's key
# (https://docs.aws.amazon.com/aws-backup/latest/devguide/encryption.html: backups of resource types
# not fully managed by AWS Backup, RDS among them, inherit the source's encryption), so a key
# scheduled for deletion takes them with it after its deletion window.
STATEFUL_TYPES = {
    "aws:rds/instance:Instance",
    "aws:efs/fileSystem:FileSystem",
    "aws:s3/bucket:Bucket",
    "aws:backup/vault:Vault",
}


def _data_keys(run: PlanRun):
    # The cluster's secrets key encrypts only etcd, which goes with the cluster.
    return [k for k in _of_type(run, "aws:kms/key:Key") if k.name != "cluster-secrets"]


def test_outside_dev_pulumi_destroy_stops_before_any_data(stack_run: PlanRun):
    """`protect` makes the engine refuse to delete the resource (and so `pulumi destroy` fails before
    deleting anything) until someone lifts it on purpose (https://www.pulumi.com/docs/iac/concepts/
    options/protect/); `retainOnDelete` leaves the key in AWS when it is deleted from the stack
    (https://www.pulumi.com/docs/iac/concepts/options/retainondelete/). Dev stays one command."""
    keep = stack_run.stack != "dev"
    stateful = [r for r in stack_run.registrations if r.type in STATEFUL_TYPES]
    assert {r.type for r in stateful} == STATEFUL_TYPES
    for resource in stateful:
        assert resource.protect is keep, resource.name
    keys = _data_keys(stack_run)
    assert len(keys) >= 2  # the data key and the Backup vault's key
    for key in keys:
        assert (key.protect, key.retain_on_delete) == (keep, keep), key.name


# Every log group that holds audit or application records: EKS control-plane logs (audit,
# authenticator, ...), every container's logs, the VPC's flow logs. The program creates each one
# itself (EKS would otherwise create the control-plane group on first write, outside the stack, with
# retention "never expire": cluster.py); groups AWS services create on their own (/aws/batch/job,
# /aws/sagemaker/*) are not the stack's and outlive it anyway.
LOG_GROUP_PURPOSES = ("cluster-control-plane", "container-logs", "network-flow-logs")


def test_outside_dev_pulumi_destroy_stops_before_any_log_group(stack_run: PlanRun):
    """Same rule as the data above: protected outside dev. Deleting a log group deletes its records
    at once, whatever its retention (pulumi-aws cloudwatch.LogGroup: only `skipDestroy` would keep
    it, and then a re-created stack collides with the fixed name)."""
    keep = stack_run.stack != "dev"
    groups = {r.name: r for r in _of_type(stack_run, "aws:cloudwatch/logGroup:LogGroup")}
    assert set(LOG_GROUP_PURPOSES) <= set(groups)
    for group in groups.values():
        assert group.protect is keep, group.name
        assert group.inputs.get("skipDestroy") in (None, False), group.name
