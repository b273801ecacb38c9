"""Cross-layer consistency between platform/, infra/ (the cluster Secret contract, node pools, IRSA
service accounts, the stack config) and plugins/ (task types, connector settings)."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from cdao_pools import NODE_POOL_LABEL
from chart_cache import default_values
from platform_checks import all_manifests, rendered
from platform_render import PLATFORM, REPO_ROOT, RenderedApp, app_projects, application_sets, sources
from platform_stack import STACKS, stack_config, written_annotations
from upstream import facts

from infra.components.data import DB_MASTER_USER
from infra.components.node_pool import (
    DEVICE_PLUGIN_CONFIG_LABEL,
    MIG_CONFIG_LABEL,
    gpu_resources,
    mig_layout_name,
    pool_labels,
)
from infra.config import NodePoolConfig
from infra.contract import (
    ADDONS,
    ANNOTATION_PREFIX,
    FLYTE_DOMAINS,
    FLYTE_TASK_SERVICE_ACCOUNT,
    SERVICE_ACCOUNTS,
    flyte_task_account,
)
from infra.program import container_log_group_name

IRSA = "eks.amazonaws.com/role-arn"
APPSET_TEXT = "\n".join(p.read_text() for p in sorted((PLATFORM / "bootstrap" / "appsets").glob("*.yaml")))

# Add-ons that cannot run without another one (namespaces and priority classes of the security
# baseline, secrets of External Secrets, CRDs of the observability stack, ...).
ADDON_DEPENDENCIES: dict[str, set[str]] = {
    "connectors": {"flyte", "security_baseline", "external_secrets", "keda"},
    "linkerd": {"security_baseline"},
    "observability": {"security_baseline"},
    "gpu_operator": {"security_baseline", "observability"},
    "keda": {"security_baseline"},
    "external_secrets": {"security_baseline"},
    # Propeller's pytorch plugin (flyte-core values) watches PyTorchJobs: the CRD must exist.
    "flyte": {
        "security_baseline",
        "external_secrets",
        "aws_load_balancer_controller",
        "observability",
        "training_operator",
    },
    "training_operator": {"security_baseline"},
    # ScaledObject (KEDA), MIG slices (GPU operator), the mesh, the ServiceMonitor and Prometheus.
    "inference": {"security_baseline", "keda", "gpu_operator", "linkerd", "observability"},
    # Database credentials (External Secrets), the /mlflow path on Flyte's ALB, ServiceMonitor CRD.
    "mlflow": {"security_baseline", "external_secrets", "aws_load_balancer_controller", "observability"},
}

# Charts that create an IRSA service account of the contract: role -> (Application, chart, name of the
# account (a values path, or the name the chart hard-codes), values path of its annotations).
CHART_SERVICE_ACCOUNTS: dict[str, tuple[str, str, tuple[str, ...] | str, tuple[str, ...]]] = {
    "flyteadmin": ("flyte", "flyte-core", "flyteadmin", ("flyteadmin", "serviceAccount", "annotations")),
    "flytepropeller": ("flyte", "flyte-core", "flytepropeller", ("flytepropeller", "serviceAccount", "annotations")),
    "datacatalog": ("flyte", "flyte-core", "datacatalog", ("datacatalog", "serviceAccount", "annotations")),
    "aws-load-balancer-controller": (
        "aws-load-balancer-controller",
        "aws-load-balancer-controller",
        ("serviceAccount", "name"),
        ("serviceAccount", "annotations"),
    ),
    "cluster-autoscaler": (
        "cluster-autoscaler",
        "cluster-autoscaler",
        ("rbac", "serviceAccount", "name"),
        ("rbac", "serviceAccount", "annotations"),
    ),
    "external-secrets": (
        "external-secrets",
        "external-secrets",
        ("serviceAccount", "name"),
        ("serviceAccount", "annotations"),
    ),
    "fluent-bit": (
        "aws-for-fluent-bit",
        "aws-for-fluent-bit",
        ("serviceAccount", "name"),
        ("serviceAccount", "annotations"),
    ),
    "mlflow": ("mlflow", "mlflow", ("serviceAccount", "name"), ("serviceAccount", "annotations")),
}

# Connector settings documented in plugins/cdao_connectors/config.py that the Deployment leaves unset.
UNSET_CONNECTOR_SETTINGS = {
    "CDAO_EMR_CLUSTER_ID": "EMR Spark steps run on transient clusters; no long-running cluster is provisioned",
}


def _at(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for part in path:
        node = node[part]
    return node


def _annotation_reads() -> set[str]:
    """Every cluster Secret annotation the ApplicationSets read (literal keys and printf patterns)."""
    literal = set(re.findall(r'index \.metadata\.annotations "([^"]+)"', APPSET_TEXT))
    patterns = re.findall(r'index \.metadata\.annotations \(printf "([^"]+)"', APPSET_TEXT)
    return literal | {p.replace("%s", "<param>") for p in patterns}


# --------------------------------------------------------------------------- cluster Secret contract


@pytest.mark.parametrize("stack", STACKS)
def test_every_annotation_read_is_written_by_the_contract(stack: str) -> None:
    written = written_annotations(stack_config(stack))
    reads = _annotation_reads()
    dynamic = {r for r in reads if "<param>" in r}
    assert dynamic == {f"{ANNOTATION_PREFIX}role-arn-flyte-tasks-<param>-<param>"}
    assert reads - dynamic <= written, f"read but never written: {sorted(reads - dynamic - written)}"


def test_annotation_reads_are_all_found() -> None:
    """The regex above sees every `index .metadata.annotations` in the ApplicationSets."""
    assert APPSET_TEXT.count("index .metadata.annotations") == len(
        re.findall(r'index \.metadata\.annotations (?:"[^"]+"|\(printf "[^"]+")', APPSET_TEXT)
    )


def _appsets_at(commit: str) -> str:
    """The ApplicationSets' text at a commit of this repository's history."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], check=True, capture_output=True, text=True).stdout

    names = git("ls-tree", "--name-only", f"{commit}:platform/bootstrap/appsets").split()
    return "\n".join(git("show", f"{commit}:platform/bootstrap/appsets/{n}") for n in names if n.endswith(".yaml"))


@pytest.mark.parametrize("stack", STACKS)
def test_chart_versions_are_pinned_read_and_promoted_together(stack: str) -> None:
    config = stack_config(stack)
    pins = config.gitops.chart_versions
    read = {k.removeprefix(f"{ANNOTATION_PREFIX}chart-version-") for k in _annotation_reads() if "chart-version-" in k}
    assert read <= set(pins), "every used chart is pinned"
    # A pinned stack runs platform/ at its pin (docs/github-setup.md, "One revision per stack"): a pin
    # main no longer reads stays until the promotion past it, but only while platform/ at the pin reads it.
    retired = set(pins) - read
    if retired:
        assert config.gitops.revision != "main", f"pinned but never read: {sorted(retired)}"
        at_pin = _appsets_at(config.gitops.revision)
        unread = {c for c in retired if f'"{ANNOTATION_PREFIX}chart-version-{c}"' not in at_pin}
        assert not unread, f"pinned but read neither on main nor at {config.gitops.revision}: {sorted(unread)}"
    for chart, version in pins.items():
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", version), f"{chart}: {version}"


def test_every_add_on_label_is_read_and_nothing_else() -> None:
    selected = set()
    for appset in application_sets():
        for generator in appset["spec"]["generators"]:
            clusters = generator.get("clusters") or generator["matrix"]["generators"][0]["clusters"]
            selected |= set(clusters["selector"]["matchLabels"])
    assert selected == {f"enable_{a}" for a in ADDONS}


@pytest.mark.parametrize("stack", STACKS)
def test_add_on_dependencies_are_enabled_together(stack: str) -> None:
    addons = stack_config(stack).addons
    for addon, needs in ADDON_DEPENDENCIES.items():
        if getattr(addons, addon):
            missing = {n for n in needs if not getattr(addons, n)}
            assert not missing, f"{stack}: {addon} needs {sorted(missing)}"


@pytest.mark.parametrize("stack", STACKS)
def test_projects_trust_the_stack_repository(stack: str) -> None:
    repo = stack_config(stack).gitops.repo_url
    for project in app_projects():
        uses_repo = any(
            s.get("repoURL") == '{{ index .metadata.annotations "cdao.io/repo-url" }}'
            for a in application_sets()
            if a["spec"]["template"]["spec"]["project"] == project["metadata"]["name"]
            for s in a["spec"]["template"]["spec"].get("sources", [a["spec"]["template"]["spec"].get("source")])
        )
        assert not uses_repo or repo in project["spec"]["sourceRepos"], project["metadata"]["name"]


# --------------------------------------------------------------------------- IRSA service accounts


def test_every_trusted_service_account_exists_with_its_role(apps: dict[str, RenderedApp], secret: dict) -> None:
    annotations = secret["metadata"]["annotations"]
    manifests = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m
        for a in apps.values()
        for m in a.manifests
        if m["kind"] == "ServiceAccount"
    }
    from_manifests = set()
    platform_accounts = [sa for sa in SERVICE_ACCOUNTS if sa.created_by == "platform"]
    enabled = {a for a in ADDONS if secret["metadata"]["labels"][f"enable_{a}"] == "true"}
    for sa in platform_accounts:
        if sa.addon is not None and sa.addon not in enabled:
            # The role exists, its add-on is off: nothing in the cluster may claim it.
            assert (sa.namespace, sa.name) not in manifests, sa.role
            if sa.role not in CHART_SERVICE_ACCOUNTS:
                from_manifests.add(sa.role)
            continue
        role_arn = annotations[f"{ANNOTATION_PREFIX}role-arn-{sa.role}"]
        if (sa.namespace, sa.name) in manifests:
            assert manifests[(sa.namespace, sa.name)]["metadata"]["annotations"][IRSA] == role_arn
            from_manifests.add(sa.role)
            continue
        assert sa.role in CHART_SERVICE_ACCOUNTS, f"no ServiceAccount {sa.namespace}/{sa.name} for role {sa.role}"
        app_name, chart, name, annotations_path = CHART_SERVICE_ACCOUNTS[sa.role]
        app = apps[app_name]
        values = app.charts[chart][1]
        assert app.app["spec"]["destination"]["namespace"] == sa.namespace, sa.role
        assert (name if isinstance(name, str) else _at(values, name)) == sa.name, sa.role
        assert _at(values, annotations_path)[IRSA] == role_arn, sa.role
    assert set(CHART_SERVICE_ACCOUNTS) == {sa.role for sa in platform_accounts} - from_manifests


def test_chart_service_account_names_are_the_charts_own() -> None:
    """flyte-core hard-codes its accounts' names (templates/_helpers.tpl): the chart values must not
    try to rename them, or the hard-coded names above would be wrong."""
    values = yaml.safe_load((PLATFORM / "addons/flyte/flyte-core/values.yaml").read_text())
    for component in ("flyteadmin", "flytepropeller", "datacatalog"):
        assert "name" not in values.get(component, {}).get("serviceAccount", {})


def test_flyte_task_namespaces_get_their_roles(stack: str, apps: dict[str, RenderedApp], secret: dict) -> None:
    config = stack_config(stack)
    accounts = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m["metadata"]["annotations"][IRSA]
        for a in apps.values()
        if a.app["metadata"]["name"].startswith("flyte-tasks-")
        for m in a.manifests
    }
    expected = {}
    for project in config.flyte.projects:
        for domain in FLYTE_DOMAINS:
            sa = flyte_task_account(project, domain)
            expected[(sa.namespace, sa.name)] = secret["metadata"]["annotations"][
                f"{ANNOTATION_PREFIX}role-arn-{sa.role}"
            ]
    assert accounts == expected
    assert {name for _, name in accounts} == {FLYTE_TASK_SERVICE_ACCOUNT}


def test_flyte_projects_and_domains_match_the_stack(stack: str, apps: dict[str, RenderedApp]) -> None:
    config = stack_config(stack)
    values = apps["flyte"].charts["flyte-core"][1]
    assert values["flyteadmin"]["initialProjects"] == config.flyte.projects
    assert [d["id"] for d in values["configmap"]["domain"]["domains"]] == list(FLYTE_DOMAINS)
    templates = "\n".join(t["value"] for t in values["cluster_resource_manager"]["templates"])
    for kind in ("Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy"):
        assert f"kind: {kind}" in templates


def test_flyte_disruption_budgets_select_the_release(apps: dict[str, RenderedApp]) -> None:
    """flyte-core labels its pods app.kubernetes.io/instance=<release name>."""
    (chart_source, _) = apps["flyte"].charts["flyte-core"]
    release = chart_source["helm"]["releaseName"]
    budgets = [m for m in apps["flyte"].manifests if m["kind"] == "PodDisruptionBudget"]
    assert {b["metadata"]["name"] for b in budgets} == {"flyteadmin", "datacatalog", "flyteconsole"}
    for budget in budgets:
        assert budget["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": budget["metadata"]["name"],
            "app.kubernetes.io/instance": release,
        }


def test_flyte_database_password_does_not_rotate_under_the_pods(apps: dict[str, RenderedApp], secret: dict) -> None:
    """flyteadmin and datacatalog read /etc/db/pass.txt once (flytestdlib database passwordPath at
    v1.16.8), so their password must not come from the RDS-managed master secret, which RDS rotates:
    they log in as their own user with a generated password that is never refreshed, and the master
    secret only reaches the database-init Job that creates that user."""
    a = secret["metadata"]["annotations"]
    for component in ("admin", "datacatalog"):
        database = apps["flyte"].charts["flyte-core"][1]["db"][component]["database"]
        assert database["username"] != DB_MASTER_USER
        assert database["host"] == a["cdao.io/db-endpoint"]
        assert str(database["port"]) == a["cdao.io/db-port"]
        assert database["dbname"] == a["cdao.io/db-name"]
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in apps["flyte"].manifests}
    name = apps["flyte"].charts["flyte-core"][1]["common"]["databaseSecret"]["name"]
    password = manifests[("ExternalSecret", name)]["spec"]
    assert password["refreshInterval"] == "0"
    assert [s["sourceRef"]["generatorRef"]["kind"] for s in password["dataFrom"]] == ["Password"]
    master = a["cdao.io/db-master-secret-arn"]
    readers = {k for k, m in manifests.items() if m["kind"] == "ExternalSecret" and master in str(m["spec"])}
    assert readers == {("ExternalSecret", "flyte-db-admin")}
    job = manifests[("Job", "flyte-database-init")]["spec"]["template"]["spec"]["containers"][0]
    sql = job["args"][0]
    assert "CREATE ROLE flyte" in sql
    assert f"ALTER ROLE {database['username']} WITH LOGIN PASSWORD" in sql


# --------------------------------------------------------------------------- connectors


def test_propeller_routes_exactly_the_connector_task_types(apps: dict[str, RenderedApp]) -> None:
    import cdao_connectors.service  # noqa: F401, PLC0415 - registers every connector, as --modules does
    from flytekit.extend.backend.base_connector import ConnectorRegistry  # noqa: PLC0415

    served = {t for c in ConnectorRegistry.list_connectors() for t in c.supported_task_types}
    from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE  # noqa: PLC0415
    from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE  # noqa: PLC0415
    from cdao_connectors.emr.task import EMR_SERVERLESS_TASK_TYPE, EMR_SPARK_TASK_TYPE  # noqa: PLC0415
    from cdao_connectors.sagemaker.task import (  # noqa: PLC0415
        BATCH_TRANSFORM_TASK_TYPE,
        SAGEMAKER_PROCESSING_TASK_TYPE,
        SAGEMAKER_TRAINING_TASK_TYPE,
    )

    sdk_types = {
        BATCH_TRANSFORM_TASK_TYPE,
        BATCH_TASK_TYPE,
        CODEWEAVE_TASK_TYPE,
        EMR_SPARK_TASK_TYPE,
        EMR_SERVERLESS_TASK_TYPE,
        SAGEMAKER_TRAINING_TASK_TYPE,
        SAGEMAKER_PROCESSING_TASK_TYPE,
    }
    assert sdk_types <= served
    # Propeller routes every type the service lists (ListAgents), whatever values.yaml says, so the two
    # must agree exactly; what must not run is not served at all (cdao_connectors.service NOT_SERVED).
    expected = served
    config = apps["flyte"].charts["flyte-core"][1]["configmap"]["enabled_plugins"]
    defaults = config["tasks"]["task-plugins"]["default-for-task-types"]
    routed = {t for t, plugin in defaults.items() if plugin == "connector-service"}
    assert routed == expected
    assert "connector-service" in config["tasks"]["task-plugins"]["enabled-plugins"]
    connector = config["plugins"]["connector-service"]
    assert set(connector["supportedTaskTypes"]) == expected
    assert connector["defaultConnector"]["endpoint"] == "k8s://cdao-connector.flyte:8000"


def test_connector_endpoint_is_the_connector_service(apps: dict[str, RenderedApp]) -> None:
    manifests = apps["connectors"].manifests
    service = next(m for m in manifests if m["kind"] == "Service")
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("cdao-connector", "flyte")
    assert 8000 in {p["port"] for p in service["spec"]["ports"]}


def _documented_connector_settings() -> set[str]:
    import cdao_connectors.config as settings  # noqa: PLC0415

    documented = set(re.findall(r"``(CDAO_[A-Z_]+)``", settings.__doc__ or ""))
    in_code = set(re.findall(r'"(CDAO_[A-Z_]+)"', Path(settings.__file__).read_text()))
    assert in_code <= documented, "plugins/cdao_connectors/config.py reads an undocumented variable"
    return documented


def test_connector_sets_exactly_the_documented_settings(apps: dict[str, RenderedApp], secret: dict) -> None:
    deployment = next(m for m in apps["connectors"].manifests if m["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    cdao = {k for k in env if k.startswith("CDAO_")}
    assert cdao == _documented_connector_settings() - set(UNSET_CONNECTOR_SETTINGS)
    a = secret["metadata"]["annotations"]
    assert env["CDAO_AWS_REGION"] == a["cdao.io/aws-region"]
    assert env["CDAO_BATCH_SPOT_QUEUE"] == a["cdao.io/batch-queue-spot"]
    assert env["CDAO_BATCH_ON_DEMAND_QUEUE"] == a["cdao.io/batch-queue-ondemand"]
    assert env["CDAO_BATCH_JOB_ROLE_ARN"] == a["cdao.io/role-arn-batch-job"]
    assert env["CDAO_EMR_SERVICE_ROLE"] == a["cdao.io/emr-service-role-arn"]
    assert env["CDAO_EMR_INSTANCE_PROFILE"] == a["cdao.io/emr-instance-profile"]
    assert env["CDAO_EMR_SUBNET_ID"] in a["cdao.io/private-subnet-ids"].split(",")
    assert env["CDAO_EMR_LOG_URI"] == a["cdao.io/emr-log-uri"]
    assert env["CDAO_EMR_ENTRYPOINT_BUCKET"] == a["cdao.io/bucket-userdata"]
    assert env["CDAO_ATTEMPT_TABLE"] == a["cdao.io/connector-attempts-table"]
    assert env["CDAO_CODEWEAVE_ENDPOINT"] == a["cdao.io/codeweave-endpoint"]
    # The API key file flytekit reads is the one the ExternalSecret writes and the pod mounts.
    secret_name = env["CDAO_CODEWEAVE_API_KEY_SECRET"]
    external = next(m for m in apps["connectors"].manifests if m["kind"] == "ExternalSecret")
    assert [d["secretKey"] for d in external["spec"]["data"]] == [secret_name]
    assert external["spec"]["data"][0]["remoteRef"]["key"] == a["cdao.io/codeweave-api-key-secret"]
    pod = deployment["spec"]["template"]["spec"]
    volume = next(
        v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == external["spec"]["target"]["name"]
    )
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == env["FLYTE_SECRETS_DEFAULT_DIR"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{a['cdao.io/ecr-connector-repository']}:{a['cdao.io/connector-image-tag']}"
    # What deploy.yml's image-<stack> job pushes for the stack's revision: its own registry, the commit.
    stack = secret["metadata"]["labels"]["environment"]
    assert re.fullmatch(rf"\d{{12}}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/cdao-{stack}-connector:[0-9a-f]{{40}}", image)


# --------------------------------------------------------------------------- node pools and GPUs


def _tolerates(tolerations: list[dict[str, str]], taint: Any) -> bool:
    for t in tolerations:
        key_ok = t.get("key") in (None, taint.key) if t.get("operator") == "Exists" else t.get("key") == taint.key
        value_ok = t.get("operator") == "Exists" or t.get("value", "") == taint.value
        effect_ok = t.get("effect") in (None, "", taint.effect)
        if key_ok and value_ok and effect_ok:
            return True
    return False


def _gpu_pools(stack: str) -> dict[str, NodePoolConfig]:
    return {n: p for n, p in stack_config(stack).enabled_pools.items() if gpu_resources(p)}


def test_time_slicing_configs_match_the_stack(stack: str, apps: dict[str, RenderedApp]) -> None:
    values = apps["gpu-operator"].charts["gpu-operator"][1]
    data = values["devicePlugin"]["config"]["data"]
    sliced = {n: p for n, p in _gpu_pools(stack).items() if p.gpu_sharing.mode == "time-slicing"}
    # The device plugin the chart deploys is the one whose config API device-plugin.yaml records.
    plugin = facts("device-plugin")
    source = apps["gpu-operator"].charts["gpu-operator"][0]
    deployed = (
        values["devicePlugin"].get("version")
        or default_values("gpu-operator", source["targetRevision"])["devicePlugin"]["version"]
    )
    assert deployed == plugin["version"], f"gpu-operator deploys device plugin {deployed}: read its config API"
    assert set(data) == {*sliced, values["devicePlugin"]["config"]["default"]}
    for name, pool in sliced.items():
        config = yaml.safe_load(data[name])
        resources = config["sharing"]["timeSlicing"]["resources"]
        assert resources == [{"name": "nvidia.com/gpu", "replicas": pool.gpu_sharing.replicas}]
        # One pod gets at most one slice: a 2-GPU request would otherwise be two slices of one GPU.
        assert config["sharing"]["timeSlicing"][plugin["time_slicing"]["fail_requests_greater_than_one_key"]] is True
        assert set(gpu_resources(pool)) == {"nvidia.com/gpu"}
        assert config["flags"]["migStrategy"] == values["mig"]["strategy"] == "mixed"
    exclusive = yaml.safe_load(data[values["devicePlugin"]["config"]["default"]])
    assert "sharing" not in exclusive


def test_mig_layouts_match_the_stack(stack: str, apps: dict[str, RenderedApp]) -> None:
    values = apps["gpu-operator"].charts["gpu-operator"][1]
    layouts = yaml.safe_load(values["migManager"]["config"]["data"]["config.yaml"])["mig-configs"]
    mig_pools = {n: p for n, p in _gpu_pools(stack).items() if p.gpu_sharing.mode == "mig"}
    assert set(layouts) == {values["migManager"]["config"]["default"], *(mig_layout_name(n) for n in mig_pools)}
    assert layouts["all-disabled"] == [{"devices": "all", "mig-enabled": False}]
    for name, pool in mig_pools.items():
        assert pool_labels(name, pool)[MIG_CONFIG_LABEL] == mig_layout_name(name)
        (layout,) = layouts[mig_layout_name(name)]
        assert layout["devices"] == "all" and layout["mig-enabled"] is True
        assert layout["mig-devices"] == dict(Counter(pool.gpu_sharing.mig_profiles))
        assert set(gpu_resources(pool)) == {f"nvidia.com/mig-{p}" for p in pool.gpu_sharing.mig_profiles}


@pytest.mark.parametrize("stack", STACKS)
def test_time_sliced_pools_select_their_device_plugin_config(stack: str) -> None:
    for name, pool in _gpu_pools(stack).items():
        if pool.gpu_sharing.mode == "time-slicing":
            assert pool_labels(name, pool).get(DEVICE_PLUGIN_CONFIG_LABEL) == name


def test_gpu_stack_tolerates_every_gpu_pool(stack: str, apps: dict[str, RenderedApp]) -> None:
    values = apps["gpu-operator"].charts["gpu-operator"][1]
    for name, pool in _gpu_pools(stack).items():
        for taint in pool.taints:
            assert _tolerates(values["daemonsets"]["tolerations"], taint), name
            assert _tolerates(values["node-feature-discovery"]["worker"]["tolerations"], taint), name


def test_flyte_gpu_settings_match_the_pools(stack: str, apps: dict[str, RenderedApp]) -> None:
    k8s = apps["flyte"].charts["flyte-core"][1]["configmap"]["k8s"]["plugins"]["k8s"]
    tolerations = k8s["resource-tolerations"]
    for name, pool in _gpu_pools(stack).items():
        for resource in gpu_resources(pool):
            assert resource in tolerations, f"{name}: Flyte adds no toleration for {resource}"
            for taint in pool.taints:
                assert _tolerates(tolerations[resource], taint), f"{name}: {resource} does not tolerate {taint}"
    sliced = [p for p in _gpu_pools(stack).values() if p.gpu_sharing.mode == "time-slicing"]
    assert all(k8s["gpu-resource-name"] in gpu_resources(p) for p in sliced)


def test_sdk_pools_agree_with_the_stack_config(stack: str) -> None:
    from cdao_pools import GPU_RESOURCE, NODE_POOLS, mig_resource  # noqa: PLC0415

    for name, pool in stack_config(stack).enabled_pools.items():
        sdk = NODE_POOLS[name]
        assert pool_labels(name, pool).items() >= sdk.node_labels.items(), name
        assert [(t.key, t.value, t.effect) for t in pool.taints] == (
            [(sdk.taint.key, sdk.taint.value, sdk.taint.effect)] if sdk.taint else []
        ), name
        resources = set(gpu_resources(pool))
        assert sdk.time_sliced == (pool.gpu_sharing.mode == "time-slicing"), name
        if pool.gpu_sharing.mode == "mig":
            assert resources == {mig_resource(p) for p in sdk.mig_profiles}, name
        elif resources:
            assert resources == {GPU_RESOURCE}, name


def _gpu_requests(pod: dict[str, Any]) -> dict[str, str]:
    return {
        name: value
        for c in pod.get("containers", []) + pod.get("initContainers", [])
        for name, value in c.get("resources", {}).get("requests", {}).items()
        if name.startswith("nvidia.com/")
    }


def test_system_workloads_land_on_the_cpu_pool(stack: str, apps: dict[str, RenderedApp]) -> None:
    cpu_labels = pool_labels("cpu", stack_config(stack).node_pools["cpu"])
    for manifest in all_manifests(stack):
        pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
        selector = pod.get("nodeSelector")
        if selector and _gpu_requests(pod):
            continue  # GPU workloads: test_gpu_workloads_request_what_their_pool_offers
        if selector:
            assert selector.items() <= cpu_labels.items(), manifest["metadata"]["name"]
            assert selector.get(NODE_POOL_LABEL) == "cpu"


# --------------------------------------------------------------------------- network and logs


def test_network_policies_use_the_stack_subnets(stack: str) -> None:
    config = stack_config(stack)
    policies = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m
        for m in all_manifests(stack)
        if m["kind"] == "NetworkPolicy"
    }
    # The namespaces whose servers use RDS and sit behind Flyte's internal ALB.
    for namespace in ("flyte", "mlflow"):
        database = policies[namespace, "allow-database-egress"]["spec"]["egress"][0]["to"]
        assert [p["ipBlock"]["cidr"] for p in database] == config.subnet_cidrs("database"), namespace
        vpc = policies[namespace, "allow-from-vpc-private-subnets"]["spec"]["ingress"][0]["from"]
        assert [p["ipBlock"]["cidr"] for p in vpc] == config.subnet_cidrs("private"), namespace


def test_flyte_task_logs_point_at_fluent_bit_log_group(apps: dict[str, RenderedApp]) -> None:
    logs = apps["flyte"].charts["flyte-core"][1]["configmap"]["task_logs"]["plugins"]["logs"]
    fluent_bit = apps["aws-for-fluent-bit"].charts["aws-for-fluent-bit"][1]["cloudWatchLogs"]
    assert logs["cloudwatch-enabled"] is True
    assert logs["cloudwatch-log-group"] == fluent_bit["logGroupName"]
    assert logs["cloudwatch-region"] == fluent_bit["region"]
    # Flyte's default link names the stream var.log.containers.<pod>_<namespace>_<container>-<id>.log.
    assert fluent_bit["logStreamTemplate"].startswith("var.log.containers.$kubernetes['pod_name']_")


def test_readme_lists_every_add_on_and_chart_version() -> None:
    readme = (REPO_ROOT / "platform" / "README.md").read_text()
    for addon in ADDONS:
        assert f"`enable_{addon}`" in readme, addon
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = dict(zip(STACKS, (c.strip("`") for c in cells[3:6]), strict=True))
    for stack in STACKS:
        for chart, version in stack_config(stack).gitops.chart_versions.items():
            assert rows.get(chart, {}).get(stack) == version, f"README: {chart} in {stack}"
    for app in rendered(STACKS[0]).values():
        for src in sources(app.app):
            if "chart" in src:
                assert src["repoURL"] in readme, src["repoURL"]


def test_connector_runs_as_the_user_its_image_creates() -> None:
    """The Deployment's runAsUser/runAsGroup must be the image's own non-root user (plugins/Dockerfile)."""
    dockerfile = (REPO_ROOT / "plugins" / "Dockerfile").read_text()
    # The file builds two targets; the connector's stage runs from `FROM ... AS connector` to the next FROM.
    (connector,) = re.findall(r"^FROM \S+ AS connector$(.*?)(?=^FROM |\Z)", dockerfile, re.MULTILINE | re.DOTALL)
    (user,) = re.findall(r"^USER (\d+):(\d+)$", connector, re.MULTILINE)
    deployment = yaml.safe_load((PLATFORM / "addons/connectors/base/deployment.yaml").read_text())
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user


def test_fluent_bit_writes_to_the_log_group_infra_owns(stack: str, apps: dict[str, RenderedApp]) -> None:
    """The name comes from the cluster Secret (infra/program.py container_log_group_name); fluent-bit
    neither creates the group nor sets its retention (fluent-bit's cloudwatch_logs output applies
    log_retention_days only to a group it creates: docs.fluentbit.io pipeline/outputs/cloudwatch)."""
    fluent_bit = apps["aws-for-fluent-bit"].charts["aws-for-fluent-bit"][1]["cloudWatchLogs"]
    assert fluent_bit["logGroupName"] == container_log_group_name(stack_config(stack))
    assert fluent_bit["autoCreateGroup"] is False
    assert not fluent_bit.get("logRetentionDays")


def test_cluster_secret_store_namespaces_match_their_users_and_the_readme(stack: str) -> None:
    """The ClusterSecretStore admits exactly the namespaces whose ExternalSecrets read it (least
    privilege, and none left unable to sync), and platform/README.md names the same namespaces."""
    manifests = all_manifests(stack)
    stores = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "ClusterSecretStore"}
    for name, store in stores.items():
        allowed = {
            ns
            for condition in store["spec"].get("conditions", [])
            for expression in condition["namespaceSelector"]["matchExpressions"]
            if expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "In"
            for ns in expression["values"]
        }
        ref = {"kind": "ClusterSecretStore", "name": name}
        # external-secrets.io/v1 ExternalSecret: spec.secretStoreRef, or a per-entry sourceRef.storeRef.
        users = {
            d["metadata"]["namespace"]
            for d in manifests
            if d["kind"] == "ExternalSecret"
            and ref
            in [d["spec"].get("secretStoreRef")]
            + [
                e.get("sourceRef", {}).get("storeRef")
                for e in d["spec"].get("data", []) + d["spec"].get("dataFrom", [])
            ]
        }
        assert allowed == users, f"{name} admits {sorted(allowed)}; its ExternalSecrets live in {sorted(users)}"
        readme = (REPO_ROOT / "platform" / "README.md").read_text()
        said = re.search(
            rf"`{name}` ClusterSecretStore \([^)]*only the ((?:`[^`]+`(?:, | and )?)+) namespaces? may", readme
        )
        assert said, f"platform/README.md does not say which namespaces may use {name}"
        assert set(re.findall(r"`([^`]+)`", said.group(1))) == allowed, said.group(0)
