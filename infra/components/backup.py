"""AWS Backup: recovery points of the state that Git cannot rebuild (RDS, EFS, tagged EBS volumes).

Everything inside the cluster is rebuilt from Git by Argo CD, and the S3 buckets are versioned (and
replicated in prod) by the data component; what remains is the database, the shared file system and
the EBS volumes that hold checkpoints and model caches. RDS keeps its own point-in-time log for
`cdao:database.backupRetentionDays`; this plan adds daily (and optionally monthly) snapshots with a
longer, per-stack retention, in a vault encrypted with its own key, optionally copied to a second
region.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.lib import iam, shared

# EBS volumes are chosen by tag rather than by ARN: the EBS CSI driver creates them at run time from
# the `gp3-backup` StorageClass (platform/addons/security-baseline), which stamps both tags on them.
BACKUP_TAG = "cdao.io/backup"
CLUSTER_TAG = "cdao.io/cluster"
# AWS-managed policies of the AWS Backup service role: they follow the services AWS Backup adds,
# which a hand-written copy would not; AWS scopes them to resources the selections name.
BACKUP_MANAGED_POLICIES = (
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
)
# After the RDS backup window (03:00-04:00 UTC, infra/components/data.py) so the two never overlap.
DAILY_SCHEDULE = "cron(0 5 * * ? *)"
MONTHLY_SCHEDULE = "cron(0 6 1 * ? *)"
START_WINDOW_MINUTES = 60
# EFS's first full backup of a large file system can take hours; later ones are incremental.
COMPLETION_WINDOW_MINUTES = 8 * 60
# The oldest the newest recovery point may be (`cdao doctor`'s backup check): DAILY_SCHEDULE fires
# every 24 h, and a job may start up to START_WINDOW_MINUTES late and run COMPLETION_WINDOW_MINUTES.
RECOVERY_POINT_MAX_AGE = timedelta(days=1, minutes=START_WINDOW_MINUTES + COMPLETION_WINDOW_MINUTES)


@dataclass(frozen=True)
class BackupArgs:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    cluster_name: str
    db_instance_arn: pulumi.Input[str]
    efs_id: pulumi.Input[str]
    daily_retention_days: int
    monthly_retention_days: int
    copy_region: str | None
    vault_lock: bool
    # Dev stacks only (config refuses it elsewhere): destroy deletes the recovery points with the vault.
    force_destroy: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    # Every stack but dev: the vaults and their keys survive `pulumi destroy` (shared.kept_on_teardown).
    keep_on_teardown: bool = False


class Backup(pulumi.ComponentResource):
    def __init__(self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:Backup", name, None, opts)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        self.key = shared.rotating_key(
            f"{name}-key",
            f"cdao-{args.stack}: AWS Backup recovery points",
            f"cdao-{args.stack}-backup",
            {**tags, "Name": f"cdao-{args.stack}-backup"},
            child,
            keep=args.keep_on_teardown,
        )
        # A vault of its own, not the account's Default vault: its key, lock and access are this stack's.
        self.vault = aws.backup.Vault(
            f"{name}-vault",
            name=f"cdao-{args.stack}",
            kms_key_arn=self.key.arn,
            # AWS refuses to delete a vault that holds recovery points.
            force_destroy=args.force_destroy,
            tags=tags,
            opts=shared.kept_on_teardown(child, args.keep_on_teardown),
        )
        if args.vault_lock:
            # Governance mode: recovery points cannot be deleted early, nor retention shortened, except
            # by a principal with backup:DeleteBackupVaultLockConfiguration (break-glass only).
            aws.backup.VaultLockConfiguration(
                f"{name}-vault-lock",
                backup_vault_name=self.vault.name,
                min_retention_days=1,
                max_retention_days=max(args.daily_retention_days, args.monthly_retention_days),
                opts=pulumi.ResourceOptions(parent=self.vault),
            )

        copy_vault_arn = self._copy_vault(name, args, args.copy_region, tags) if args.copy_region else None
        self.copy_vault_arn = copy_vault_arn

        self.role = aws.iam.Role(
            f"{name}-role",
            description=f"AWS Backup: back up and restore cdao-{args.stack}'s RDS, EFS and EBS",
            # Only on behalf of this account: the confused-deputy guard for a service principal.
            assume_role_policy=iam.service_trust("backup.amazonaws.com", args.account_id),
            tags=tags,
            opts=child,
        )
        for arn in BACKUP_MANAGED_POLICIES:
            aws.iam.RolePolicyAttachment(
                f"{name}-role-{arn.rsplit('/', 1)[1]}",
                role=self.role.name,
                policy_arn=arn,
                opts=pulumi.ResourceOptions(parent=self.role),
            )

        rules = [self._rule("daily", DAILY_SCHEDULE, args.daily_retention_days, copy_vault_arn)]
        if args.monthly_retention_days:
            rules.append(self._rule("monthly", MONTHLY_SCHEDULE, args.monthly_retention_days, copy_vault_arn))
        self.plan = aws.backup.Plan(
            f"{name}-plan",
            name=f"cdao-{args.stack}",
            rules=rules,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.vault]),
        )

        efs_arn = pulumi.Output.all(args.account_id, args.efs_id).apply(
            lambda a: f"arn:aws:elasticfilesystem:{args.region}:{a[0]}:file-system/{a[1]}"
        )
        aws.backup.Selection(
            f"{name}-state",
            name=f"cdao-{args.stack}-rds-efs",
            plan_id=self.plan.id,
            iam_role_arn=self.role.arn,
            resources=[args.db_instance_arn, efs_arn],
            opts=pulumi.ResourceOptions(parent=self.plan),
        )
        aws.backup.Selection(
            f"{name}-volumes",
            name=f"cdao-{args.stack}-ebs",
            plan_id=self.plan.id,
            iam_role_arn=self.role.arn,
            # Any EBS volume of this region that carries both tags; the cluster tag keeps two stacks in
            # one account from backing up each other's volumes.
            resources=[f"arn:aws:ec2:{args.region}:*:volume/*"],
            conditions=[
                aws.backup.SelectionConditionArgs(
                    string_equals=[
                        aws.backup.SelectionConditionStringEqualArgs(key=f"aws:ResourceTag/{BACKUP_TAG}", value="true"),
                        aws.backup.SelectionConditionStringEqualArgs(
                            key=f"aws:ResourceTag/{CLUSTER_TAG}", value=args.cluster_name
                        ),
                    ]
                )
            ],
            opts=pulumi.ResourceOptions(parent=self.plan),
        )

        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        # What docs/disaster-recovery.md's restore commands take.
        self.stack_outputs: dict[str, Any] = {
            "backup": {
                "vaultName": self.vault.name,
                "planId": self.plan.id,
                "roleArn": self.role.arn,
                "copyVaultArn": copy_vault_arn,
            }
        }
        self.register_outputs(
            {
                "vaultName": self.vault.name,
                "vaultArn": self.vault.arn,
                "planId": self.plan.id,
                "roleArn": self.role.arn,
                "copyVaultArn": copy_vault_arn,
            }
        )

    def _rule(
        self, label: str, schedule: str, retention_days: int, copy_vault_arn: pulumi.Output[str] | None
    ) -> aws.backup.PlanRuleArgs:
        lifecycle = aws.backup.PlanRuleLifecycleArgs(delete_after=retention_days)
        copies = (
            [
                aws.backup.PlanRuleCopyActionArgs(
                    destination_vault_arn=copy_vault_arn,
                    lifecycle=aws.backup.PlanRuleCopyActionLifecycleArgs(delete_after=retention_days),
                )
            ]
            if copy_vault_arn is not None
            else None
        )
        return aws.backup.PlanRuleArgs(
            rule_name=label,
            target_vault_name=self.vault.name,
            schedule=schedule,
            schedule_expression_timezone="Etc/UTC",
            start_window=START_WINDOW_MINUTES,
            completion_window=COMPLETION_WINDOW_MINUTES,
            lifecycle=lifecycle,
            copy_actions=copies,
            recovery_point_tags={"cdao.io/backup-rule": label},
        )

    def _copy_vault(self, name: str, args: BackupArgs, region: str, tags: Mapping[str, str]) -> pulumi.Output[str]:
        # pulumi-aws 7's per-resource `region`: no second provider to configure and keep in step.
        opts = pulumi.ResourceOptions(parent=self)
        # Not shared.rotating_key: this key lives in the copy region (pulumi-aws 7's `region`).
        key = aws.kms.Key(
            f"{name}-copy-key",
            description=f"cdao-{args.stack}: copies of AWS Backup recovery points in {region}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags={**tags, "Name": f"cdao-{args.stack}-backup-copy"},
            region=region,
            opts=shared.kept_on_teardown(opts, args.keep_on_teardown, retain=True),
        )
        vault = aws.backup.Vault(
            f"{name}-copy-vault",
            name=f"cdao-{args.stack}-copy",
            kms_key_arn=key.arn,
            force_destroy=args.force_destroy,
            tags=tags,
            region=region,
            opts=shared.kept_on_teardown(opts, args.keep_on_teardown),
        )
        return vault.arn
