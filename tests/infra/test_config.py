"""Bad stack configuration stops the program before anything is declared, naming the key."""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path

import pulumi
import pytest

import cdao_stacks
from cdao_cli.main import main
from cdao_cli.plan.runner import read_stack_file, run_program_with_config
from infra.config import ConfigError, parse_stack_config

BAD_CONFIGS = sorted((Path(__file__).parent / "bad_configs").glob("*.yaml"))
VALID = {
    "cdao-stack:profile": "dev",
    "aws:region": "us-east-1",
    "cdao:team": "ml-platform",
    "cdao:costCenter": "cc-1",
    "cdao:gitops": {"repoUrl": "https://github.com/acme/platform.git"},
    "cdao:flyte": {"hostname": "flyte.test.example.org", "certificateValidation": "external"},
    "cdao:cluster": {
        "endpointPublicAccess": True,
        "publicAccessCidrs": ["203.0.113.0/28"],
        "deployRoleArns": ["arn:aws:iam::111122223333:role/deploy"],
        "breakGlassRoleArn": "arn:aws:iam::111122223333:role/break-glass",
    },
}


def _expected_key(path: Path) -> str:
    match = re.search(r"^# expect: (\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} must say which key it breaks (# expect: <key>)"
    return match.group(1)


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[p.stem for p in BAD_CONFIGS])
def test_plan_rejects_bad_config_naming_the_key(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    shutil.copy(path, tmp_path / "Pulumi.dev.yaml")

    code = main(["plan", "--stack", "dev", "--environments", str(tmp_path)])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "stack 'dev'" in captured.err
    assert f"{_expected_key(path)} = " in captured.err


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[p.stem for p in BAD_CONFIGS])
def test_program_declares_nothing_on_bad_config(path: Path, tmp_path: Path):
    shutil.copy(path, tmp_path / "Pulumi.dev.yaml")
    raw, _ = read_stack_file("dev", tmp_path)

    registrations, error = run_program_with_config("dev", "us-east-1", raw)

    assert registrations == []
    assert isinstance(error, pulumi.RunError)
    assert _expected_key(path) in str(error)


def test_unknown_stack_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    assert main(["plan", "--stack", "qa"]) == 2
    err = capsys.readouterr().err
    assert "unknown stack 'qa'" in err
    assert "dev, staging, prod" in err


def test_unreadable_stack_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "Pulumi.dev.yaml").write_text("config: [not, a, mapping]\n")
    assert main(["plan", "--stack", "dev", "--environments", str(tmp_path)]) == 2
    assert "Pulumi.dev.yaml" in capsys.readouterr().err


def test_every_problem_is_reported_at_once():
    raw = {
        **VALID,
        "cdao:nodePools": {"cpu": {"minSize": 9, "maxSize": 3}},
        "cdao:database": {"multiAz": "maybe"},
    }
    raw["cdao:nodePools"]["a100-mig"] = {"gpuSharing": {"mode": "mig", "migProfiles": ["9g.99gb"]}}
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", raw)
    # Pydantic's type errors come first; cross-field checks run only on a well-typed config.
    assert info.value.keys == ["cdao:database.multiAz"]


def test_secret_value_is_never_echoed():
    raw = {
        **VALID,
        "cdao:codeweave": {"enabled": True, "accountId": "210987654321"},
        "cdao:codeweaveExternalId": "bad id!",
    }
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", raw)
    assert "bad id!" not in str(info.value)
    assert "cdao:codeweaveExternalId = <secret>" in str(info.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({}, "cdao-stack:profile = <missing>: expected the policy profile the stack follows: dev, staging, prod"),
        ({"cdao-stack:profile": "qa"}, 'cdao-stack:profile = "qa": expected the policy profile'),
        ({"cdao-stack:profile": "prod", "cdao-stack:tier": 1}, "cdao-stack:tier = 1: expected no such key"),
    ],
)
def test_the_program_refuses_a_missing_or_bad_registry_entry(entry, message):
    # `pulumi up` runs the program without the registry: the program checks the keys itself.
    raw = {k: v for k, v in VALID.items() if not k.startswith("cdao-stack:")} | entry
    with pytest.raises(ConfigError) as info:
        parse_stack_config("qa", raw)
    assert f"stack 'qa': {message}" in str(info.value)


def test_the_profile_decides_teardown_and_promotes_from_decides_pinning():
    disposable = {**VALID, "cdao:storage": {"forceDestroy": True}}
    assert parse_stack_config("qa", disposable)[0].destroyable
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", {**disposable, "cdao-stack:profile": "staging"})
    assert info.value.keys == ["cdao:storage.forceDestroy"]
    with pytest.raises(ConfigError) as info:
        parse_stack_config("qa", {**VALID, "cdao-stack:promotesFrom": "dev"})
    assert info.value.keys == ["cdao:gitops.revision"]


def test_engine_json_strings_parse_like_objects():
    as_objects, _ = parse_stack_config("dev", {**VALID, "cdao:network": {"natGateways": "single"}})
    as_json, _ = parse_stack_config("dev", {**VALID, "cdao:network": '{"natGateways": "single"}'})
    assert as_objects == as_json


def test_defaults_give_the_seeds_four_pools_with_gpu_pools_at_zero():
    config, _ = parse_stack_config("dev", VALID)
    assert list(config.enabled_pools) == ["cpu", "a100-timeslice", "a100-mig", "h100-timeslice"]
    assert all(config.node_pools[p].min_size == 0 for p in ("a100-timeslice", "a100-mig", "h100-timeslice"))
    assert config.node_pools["a100-mig"].gpu_sharing.mig_profiles == [
        "1g.10gb",
        "1g.10gb",
        "2g.20gb",
        "3g.40gb",
    ]


def test_derived_subnets_are_disjoint_and_inside_the_vpc():
    config, _ = parse_stack_config("dev", {**VALID, "cdao:network": {"vpcCidr": "10.8.0.0/16"}})

    cidrs = [ipaddress.ip_network(c) for tier in ("public", "private", "database") for c in config.subnet_cidrs(tier)]
    assert len(cidrs) == 9
    assert all(c.subnet_of(ipaddress.ip_network("10.8.0.0/16")) for c in cidrs)
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1 :])


@pytest.mark.parametrize("stack", cdao_stacks.load().names)
def test_stack_files_hold_only_known_keys_and_parse(stack: str):
    raw, stood_in = read_stack_file(stack)
    config, secrets = parse_stack_config(stack, raw)
    assert config.stack == stack
    # The only value the offline plan invents is the secret it cannot decrypt.
    assert stood_in == ["cdao:codeweaveExternalId"]
    assert set(secrets) == {"codeweaveExternalId"}


# ---------------------------------------------------------------- what the first `pulumi up` needs of the cpu pool
def _with_pool(pool: str, **override) -> dict:
    return {**VALID, "cdao:nodePools": {pool: override}}


def test_a_cpu_pool_that_keeps_one_node_and_only_prefers_no_schedule_is_accepted():
    """The floor is what the first `pulumi up` needs: the cluster autoscaler arrives later through
    Argo CD, which itself must schedule on this pool (no tolerations in infra/components/gitops.py)."""
    config, _ = parse_stack_config(
        "dev",
        _with_pool("cpu", minSize=1, taints=[{"key": "spot", "value": "avoid", "effect": "PreferNoSchedule"}]),
    )
    assert config.node_pools["cpu"].min_size == 1


@pytest.mark.parametrize("effect", ["NoSchedule", "NoExecute"])
def test_a_cpu_pool_taint_that_keeps_argocd_off_is_refused(effect: str):
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", _with_pool("cpu", taints=[{"key": "dedicated", "value": "x", "effect": effect}]))
    assert info.value.keys == ["cdao:nodePools.cpu.taints[0]"]
    assert "Argo CD" in str(info.value)


@pytest.mark.parametrize(
    "label",
    [
        "cdao.io/node-pool",
        "cdao.io/gpu-sharing",
        "workload-type.cdao.io/training",
        "nvidia.com/mig.config",
        "nvidia.com/device-plugin.config",
        "nvidia.com/gpu.product",
        "k8s.amazonaws.com/accelerator",
    ],
)
def test_a_label_in_a_namespace_the_program_or_gpu_stack_owns_is_refused(label: str):
    """infra/components/node_pool.py's pool_labels sets these (and the GPU operator's feature
    discovery owns nvidia.com/*): a user label there would relabel the node group and the
    autoscaler's node template."""
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", _with_pool("a100-timeslice", labels={label: "other"}))
    assert info.value.keys == ["cdao:nodePools.a100-timeslice.labels"]


def test_a_label_in_the_users_own_namespace_is_kept():
    config, _ = parse_stack_config("dev", _with_pool("a100-timeslice", labels={"team.example.com/owner": "ml"}))
    assert config.node_pools["a100-timeslice"].labels == {"team.example.com/owner": "ml"}


# ---------------------------------------------------------------- regions and tags
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cdao:storage", {"replicationRegion": "mars-1"}),
        ("cdao:storage", {"replicationRegion": "us-east-1"}),
        ("cdao:backup", {"copyRegion": "mars-1"}),
        ("cdao:backup", {"copyRegion": "us-east-1"}),
    ],
)
def test_a_second_region_must_be_an_aws_region_other_than_the_stacks(key: str, value: dict):
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", {**VALID, key: value})
    assert info.value.keys == [f"{key}.{next(iter(value))}"]


def test_a_second_region_elsewhere_is_accepted():
    config, _ = parse_stack_config("dev", {**VALID, "cdao:storage": {"replicationRegion": "us-west-2"}})
    assert config.storage.replication_region == "us-west-2"


@pytest.mark.parametrize("key", ["cdao:team", "cdao:costCenter"])
@pytest.mark.parametrize("value", ["t" * 257, "aws:cc-1", "AWS:cc-1"])
def test_a_tag_value_aws_refuses_is_refused(key: str, value: str):
    """Tag values are at most 256 characters and may not start with aws: in any case
    (https://docs.aws.amazon.com/batch/latest/userguide/tag-restrictions.html)."""
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", {**VALID, key: value})
    assert info.value.keys == [key]


@pytest.mark.parametrize("key", ["cdao:team", "cdao:costCenter"])
def test_the_longest_tag_value_is_accepted(key: str):
    config, _ = parse_stack_config("dev", {**VALID, key: "t" * 256})
    assert len(config.tags["team" if key == "cdao:team" else "cost-center"]) == 256


def test_every_label_the_program_sets_is_in_a_namespace_users_may_not_set():
    """A label pool_labels adds later in a new namespace must join the reserved ones, or a user
    label could override it (pool_labels applies the user's labels last)."""
    from infra.components.node_pool import pool_labels  # noqa: PLC0415
    from infra.config import _in_domain, _reserved_label_domains  # noqa: PLC0415

    config, _ = parse_stack_config("dev", VALID)
    reserved = _reserved_label_domains()
    for name, pool in config.node_pools.items():
        for key in pool_labels(name, pool):
            assert _in_domain(key.partition("/")[0], reserved), (name, key)


def test_log_retention_days_are_what_cloudwatch_accepts():
    """The retention periods config accepts are the ones botocore's CloudWatch Logs model lists
    (shape `Days`, the type of PutRetentionPolicy's retentionInDays): none missing, none extra."""
    import re  # noqa: PLC0415

    import botocore.session  # noqa: PLC0415

    from infra.config import LOG_RETENTION_DAYS  # noqa: PLC0415

    model = botocore.session.get_session().get_service_model("logs")
    text = model.shape_for("Days").documentation
    listed = {int(n) for n in re.findall(r"\d+", text.split("Possible values are:")[1].split("</p>")[0])}
    assert set(LOG_RETENTION_DAYS) == listed


@pytest.mark.parametrize(
    ("section", "key", "value", "written"),
    [
        ("cdao:cluster", "publicAccessCidrs", ["203.0.113.1/28"], "203.0.113.0/28"),
        ("cdao:cluster", "privateAccessCidrs", ["10.255.0.7/24"], "10.255.0.0/24"),
        ("cdao:network", "vpcCidr", "10.0.0.1/16", "10.0.0.0/16"),
        ("cdao:network", "publicSubnetCidrs", ["10.0.200.1/24", "10.0.201.0/24"], "10.0.200.0/24"),
    ],
)
def test_cidr_with_host_bits_says_what_to_write(section: str, key: str, value, written: str):
    """A CIDR with host bits set (Python's ipaddress, strict=True, refuses it as AWS does) must name
    the network the user meant, not echo pydantic's "Input is not ..." as "expected not ..."."""
    raw = {**VALID, section: {**VALID.get(section, {}), key: value}}
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", raw)
    message = str(info.value)
    assert "expected not" not in message
    assert "host bits" in message and written in message, message


def test_malformed_cidr_says_what_a_cidr_looks_like():
    raw = {**VALID, "cdao:cluster": {**VALID["cdao:cluster"], "publicAccessCidrs": ["203.0.113.0/33"]}}
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", raw)
    message = str(info.value)
    assert "expected not" not in message and "CIDR notation" in message, message
