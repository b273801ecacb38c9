"""AWS Backup under the mock runtime: what each stack backs up, for how long, where, and as whom."""

from __future__ import annotations

import json

import cdao_stacks
from cdao_cli.plan.runner import PlanRun, run_program_with_config
from infra.components.backup import BACKUP_MANAGED_POLICIES, BACKUP_TAG, CLUSTER_TAG
from infra.program import cluster_name


def _of_type(run: PlanRun, typ: str):
    return [r for r in run.registrations if r.type == typ]


def _one(run: PlanRun, typ: str, name: str):
    (found,) = [r for r in _of_type(run, typ) if r.name == name]
    return found


def test_vault_is_the_stacks_own_and_encrypted_with_its_own_key(stack_run: PlanRun):
    vault = _one(stack_run, "aws:backup/vault:Vault", "backup-vault")
    key = _one(stack_run, "aws:kms/key:Key", "backup-key")
    assert vault.inputs["name"] == f"cdao-{stack_run.stack}"
    assert vault.inputs["kmsKeyArn"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    data_key = _one(stack_run, "aws:kms/key:Key", "data-key")
    assert key.outputs["arn"] != data_key.outputs["arn"], "a leaked data key must not also open the backups"


def test_rules_keep_recovery_points_for_the_stacks_retention(stack_run: PlanRun):
    spec = stack_run.config.backup
    plan = _one(stack_run, "aws:backup/plan:Plan", "backup-plan")
    rules = {r["ruleName"]: r for r in plan.inputs["rules"]}
    expected = {"daily": spec.daily_retention_days}
    if spec.monthly_retention_days:
        expected["monthly"] = spec.monthly_retention_days
    assert {name: r["lifecycle"]["deleteAfter"] for name, r in rules.items()} == expected
    for rule in rules.values():
        assert rule["targetVaultName"] == f"cdao-{stack_run.stack}"
        assert rule["schedule"].startswith("cron(")
        assert rule["startWindow"] < rule["completionWindow"]


def test_retention_grows_along_the_promotion_order(plan_of):
    specs = [plan_of(s).config.backup for s in cdao_stacks.load().promotion_order]
    daily = [spec.daily_retention_days for spec in specs]
    assert daily == sorted(set(daily)), daily  # each stack keeps its backups longer than the one before
    assert specs[-1].monthly_retention_days >= 365


def test_copies_go_to_a_vault_in_the_copy_region_only_where_configured(stack_run: PlanRun):
    spec = stack_run.config.backup
    plan = _one(stack_run, "aws:backup/plan:Plan", "backup-plan")
    copies = [c for r in plan.inputs["rules"] for c in r.get("copyActions") or []]
    if not spec.copy_region:
        assert copies == []
        assert not [v for v in _of_type(stack_run, "aws:backup/vault:Vault") if v.name == "backup-copy-vault"]
        return
    copy_vault = _one(stack_run, "aws:backup/vault:Vault", "backup-copy-vault")
    copy_key = _one(stack_run, "aws:kms/key:Key", "backup-copy-key")
    assert copy_vault.inputs["region"] == copy_key.inputs["region"] == spec.copy_region != stack_run.config.region
    assert copy_vault.inputs["kmsKeyArn"] == copy_key.outputs["arn"]
    assert copy_vault.outputs["arn"].startswith(f"arn:aws:backup:{spec.copy_region}:")
    assert len(copies) == len(plan.inputs["rules"])
    for rule in plan.inputs["rules"]:
        (copy,) = rule["copyActions"]
        assert copy["destinationVaultArn"] == copy_vault.outputs["arn"]
        assert copy["lifecycle"]["deleteAfter"] == rule["lifecycle"]["deleteAfter"]


def test_selections_cover_the_database_the_file_system_and_tagged_volumes(stack_run: PlanRun):
    plan = _one(stack_run, "aws:backup/plan:Plan", "backup-plan")
    role = _one(stack_run, "aws:iam/role:Role", "backup-role")
    db = _one(stack_run, "aws:rds/instance:Instance", "data-db")
    efs = _one(stack_run, "aws:efs/fileSystem:FileSystem", "data-efs")
    state = _one(stack_run, "aws:backup/selection:Selection", "backup-state")
    volumes = _one(stack_run, "aws:backup/selection:Selection", "backup-volumes")
    for selection in (state, volumes):
        assert selection.inputs["planId"] == plan.outputs["id"]
        assert selection.inputs["iamRoleArn"] == role.outputs["arn"]
    region = stack_run.config.region
    assert state.inputs["resources"] == [
        db.outputs["arn"],
        f"arn:aws:elasticfilesystem:{region}:{db.outputs['arn'].split(':')[4]}:file-system/{efs.outputs['id']}",
    ]
    assert volumes.inputs["resources"] == [f"arn:aws:ec2:{region}:*:volume/*"]
    (condition,) = volumes.inputs["conditions"]
    assert {(c["key"], c["value"]) for c in condition["stringEquals"]} == {
        (f"aws:ResourceTag/{BACKUP_TAG}", "true"),
        (f"aws:ResourceTag/{CLUSTER_TAG}", cluster_name(stack_run.config)),
    }


def test_backup_role_trusts_only_aws_backup_for_this_account(stack_run: PlanRun):
    role = _one(stack_run, "aws:iam/role:Role", "backup-role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "backup.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    account = _one(stack_run, "aws:rds/instance:Instance", "data-db").outputs["arn"].split(":")[4]
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == account
    attached = {
        a.inputs["policyArn"]
        for a in _of_type(stack_run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]
    }
    assert attached == set(BACKUP_MANAGED_POLICIES)


def test_only_prod_locks_its_vault_for_its_longest_retention(plan_of):
    (lock,) = _of_type(plan_of("prod"), "aws:backup/vaultLockConfiguration:VaultLockConfiguration")
    assert lock.inputs["maxRetentionDays"] == plan_of("prod").config.backup.max_retention_days
    assert lock.inputs["backupVaultName"] == "cdao-prod"
    for stack in (s.name for s in cdao_stacks.load().stacks if s.profile != "prod"):
        assert not _of_type(plan_of(stack), "aws:backup/vaultLockConfiguration:VaultLockConfiguration")


def test_stack_output_names_what_the_restore_runbook_needs(stack_run: PlanRun):
    backup = stack_run.outputs["backup"]
    assert backup["vaultName"] == f"cdao-{stack_run.stack}"
    assert backup["roleArn"].startswith("arn:aws:iam::") and backup["planId"]
    assert bool(backup["copyVaultArn"]) == bool(stack_run.config.backup.copy_region)
    assert stack_run.outputs["dbInstanceIdentifier"].startswith(f"cdao-{stack_run.stack}-flyte-")


def test_disabling_backup_declares_no_backup_resource():
    raw = {
        "cdao-stack:profile": "staging",
        "aws:region": "us-east-1",
        "cdao:team": "ml-platform",
        "cdao:costCenter": "cc-1",
        "cdao:gitops": {"repoUrl": "https://github.com/acme/platform.git"},
        "cdao:flyte": {"hostname": "flyte.test.example.org", "certificateValidation": "external"},
        "cdao:cluster": {
            "privateAccessCidrs": ["10.255.0.0/24"],
            "deployRoleArns": ["arn:aws:iam::111122223333:role/deploy"],
            "breakGlassRoleArn": "arn:aws:iam::111122223333:role/break-glass",
        },
        "cdao:backup": {"enabled": False},
        "cdao:network": {"transitGatewayId": "tgw-0123456789abcdef0"},
    }
    registrations, error = run_program_with_config("test", "us-east-1", raw)
    assert error is None
    assert registrations, "the rest of the program still ran"
    assert not [r for r in registrations if r.type.startswith("aws:backup/")]
