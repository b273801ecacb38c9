"""Cross-layer checks of the GPU architecture's upper layers: distributed training, LLM serving,
MLflow, backups of volumes and the priority order. Every expected value is computed from infra/
(stack config, node pools, contract, backup) or from the plugins, never restated."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from cdao_pools import NODE_POOL_LABEL
from platform_checks import all_manifests
from platform_render import PLATFORM, RenderedApp, app_projects, application_sets
from platform_stack import STACKS, stack_config

from cdao_catalog.instances import INSTANCE_TYPES
from infra.components.backup import BACKUP_TAG, CLUSTER_TAG
from infra.components.node_pool import gpu_resources, pool_labels
from infra.contract import ANNOTATION_PREFIX, SERVICE_ACCOUNTS
from infra.lib.mlops import MLFLOW_ARTIFACTS_PREFIX, MODELS_PREFIX
from infra.program import cluster_name

IRSA = "eks.amazonaws.com/role-arn"
PROJECTS = {p["metadata"]["name"]: p for p in app_projects()}
APPSETS = {a["metadata"]["name"]: a for a in application_sets()}


def _tolerates(tolerations: list[dict[str, str]], key: str, value: str, effect: str) -> bool:
    for t in tolerations:
        if t.get("operator") == "Exists":
            if t.get("key") in (None, key) and t.get("effect") in (None, "", effect):
                return True
        elif t.get("key") == key and t.get("value", "") == value and t.get("effect") in (None, "", effect):
            return True
    return False


def _one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def _annotation(secret: dict, key: str) -> str:
    return secret["metadata"]["annotations"][f"{ANNOTATION_PREFIX}{key}"]


def _role(name: str):
    (sa,) = [sa for sa in SERVICE_ACCOUNTS if sa.role == name]
    return sa


# --------------------------------------------------------------------------- GPU workloads and pools


def test_gpu_workloads_request_what_their_pool_offers(stack: str) -> None:
    """Every pod template asking for a GPU resource selects an enabled pool that advertises it and
    tolerates all of that pool's taints (computed from infra.config and infra.components.node_pool)."""
    config = stack_config(stack)
    for manifest in all_manifests(stack):
        pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
        requested = {
            name
            for c in pod.get("containers", [])
            for name in c.get("resources", {}).get("limits", {})
            if name.startswith("nvidia.com/")
        }
        if not requested:
            continue
        pool_name = pod["nodeSelector"][NODE_POOL_LABEL]
        pool = config.enabled_pools[pool_name]
        assert pod["nodeSelector"].items() <= pool_labels(pool_name, pool).items(), manifest["metadata"]["name"]
        assert requested <= set(gpu_resources(pool)), f"{pool_name} offers {sorted(gpu_resources(pool))}"
        for taint in pool.taints:
            assert _tolerates(pod.get("tolerations", []), taint.key, taint.value, taint.effect), taint
        for c in pod["containers"]:
            limits, requests = c["resources"]["limits"], c["resources"]["requests"]
            for name in requested & set(limits):
                assert requests.get(name) == limits[name], "extended resources cannot overcommit"


def _vllm(stack: str, apps: dict[str, RenderedApp]) -> dict[str, Any]:
    return _one(apps["inference"].manifests, "Deployment", "vllm")


@pytest.mark.parametrize("stack", [s for s in STACKS if stack_config(s).addons.inference])
def test_vllm_runs_on_a_mig_profile_of_the_mig_pool(stack: str) -> None:
    from platform_checks import rendered  # noqa: PLC0415

    apps = rendered(stack)
    config = stack_config(stack)
    mig_pools = {n: p for n, p in config.enabled_pools.items() if p.gpu_sharing.mode == "mig"}
    assert mig_pools, f"{stack} enables inference without a MIG pool"
    pod = _vllm(stack, apps)["spec"]["template"]["spec"]
    pool_name = pod["nodeSelector"][NODE_POOL_LABEL]
    assert pool_name in mig_pools
    pool = mig_pools[pool_name]
    (resource,) = [r for r in pod["containers"][0]["resources"]["limits"] if r.startswith("nvidia.com/")]
    profile = resource.removeprefix("nvidia.com/mig-")
    assert profile in pool.gpu_sharing.mig_profiles
    # KEDA can never ask for more replicas than the pool has slices of that profile, nor than the quota.
    kind = INSTANCE_TYPES[pool.instance_types[0]]
    slices = pool.gpu_sharing.mig_profiles.count(profile) * kind.gpu_count * pool.max_size
    scaled = _one(apps["inference"].manifests, "ScaledObject", "vllm")["spec"]
    quota = _one(all_manifests(stack), "ResourceQuota", "inference")["spec"]["hard"]
    assert scaled["maxReplicaCount"] <= min(slices, int(quota[f"requests.{resource}"]))
    assert pod["priorityClassName"] == "cdao-production-inference"


@pytest.mark.parametrize("stack", [s for s in STACKS if stack_config(s).addons.inference])
def test_vllm_loads_weights_from_s3_only(stack: str) -> None:
    from platform_checks import rendered  # noqa: PLC0415
    from platform_stack import cluster_secret  # noqa: PLC0415

    apps, secret = rendered(stack), cluster_secret(stack)
    deployment = _vllm(stack, apps)
    pod = deployment["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["MODELS_URI"] == _annotation(secret, "models-uri")
    assert env["MODELS_URI"].endswith(f"/{MODELS_PREFIX}") and env["AWS_REGION"] == _annotation(secret, "aws-region")
    assert "aws s3 sync" in fetch["args"][0] and '"${MODELS_URI}${MODEL_NAME}/"' in fetch["args"][0]
    vllm = pod["containers"][0]
    vllm_env = {e["name"]: e["value"] for e in vllm["env"]}
    assert vllm_env["HF_HUB_OFFLINE"] == vllm_env["TRANSFORMERS_OFFLINE"] == "1"
    assert vllm["args"][0] == f"/models/{env['MODEL_NAME']}"
    fetch_mounts = {m["name"]: m["mountPath"] for m in fetch["volumeMounts"]}
    vllm_mounts = {m["name"]: m for m in vllm["volumeMounts"]}
    assert fetch_mounts["models"] == vllm_mounts["models"]["mountPath"] == "/models"
    assert vllm_mounts["models"]["readOnly"] is True
    # The IRSA role that can read that prefix is the pod's.
    sa = _role("inference")
    account = _one(apps["inference"].manifests, "ServiceAccount", pod["serviceAccountName"])
    assert (account["metadata"]["namespace"], account["metadata"]["name"]) == (sa.namespace, sa.name)
    assert account["metadata"]["annotations"][IRSA] == _annotation(secret, "role-arn-inference")
    assert vllm["image"] == f"docker.io/vllm/vllm-openai:{_annotation(secret, 'chart-version-vllm')}"


def test_vllm_serving_has_probes_budget_mesh_and_metrics(stack: str, apps: dict[str, RenderedApp]) -> None:
    if "inference" not in apps:
        pytest.skip(f"inference is off in {stack}")
    manifests = apps["inference"].manifests
    deployment = _one(manifests, "Deployment", "vllm")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["linkerd.io/inject"] == "enabled"
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = _one(manifests, "PodDisruptionBudget", "vllm")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one(manifests, "Service", "vllm")
    monitor = _one(manifests, "ServiceMonitor", "vllm")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {p["name"] for p in service["spec"]["ports"]} >= {e["port"] for e in monitor["spec"]["endpoints"]}


def test_keda_scales_vllm_from_prometheus_and_to_zero_only_outside_prod(
    stack: str, apps: dict[str, RenderedApp]
) -> None:
    if "inference" not in apps:
        pytest.skip(f"inference is off in {stack}")
    scaled = _one(apps["inference"].manifests, "ScaledObject", "vllm")["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"}
    (prometheus,) = [t for t in scaled["triggers"] if t["type"] == "prometheus"]
    release = apps["kube-prometheus-stack"].charts["kube-prometheus-stack"][0]["helm"]["releaseName"]
    namespace = apps["kube-prometheus-stack"].app["spec"]["destination"]["namespace"]
    assert prometheus["metadata"]["serverAddress"] == f"http://{release}-prometheus.{namespace}.svc:9090"
    assert "vllm:num_requests_waiting" in prometheus["metadata"]["query"]
    if stack == "prod":
        assert scaled["minReplicaCount"] >= 2
    else:
        assert scaled["minReplicaCount"] == 0
        # Scale-from-zero needs a signal that exists with no replica running.
        assert any(t["type"] == "cron" for t in scaled["triggers"])


# --------------------------------------------------------------------------- distributed training


def test_propeller_sends_pytorch_tasks_to_the_training_operator(apps: dict[str, RenderedApp]) -> None:
    from flytekitplugins.kfpytorch import Elastic  # noqa: PLC0415
    from flytekitplugins.kfpytorch.task import PytorchElasticFunctionTask  # noqa: PLC0415

    def train() -> None: ...

    multi_node = PytorchElasticFunctionTask(
        task_config=Elastic(nnodes=2, increase_shared_mem=False), task_function=train
    )
    plugins = apps["flyte"].charts["flyte-core"][1]["configmap"]["enabled_plugins"]["tasks"]["task-plugins"]
    assert "pytorch" in plugins["enabled-plugins"]
    assert plugins["default-for-task-types"][multi_node.task_type] == "pytorch"
    assert "training-operator" in apps, "the pytorch plugin needs the PyTorchJob CRD"


def test_training_operator_is_pinned_and_stays_in_its_project(stack: str, apps: dict[str, RenderedApp]) -> None:
    app = apps["training-operator"]
    (remote,) = app.remote_sources
    pins = stack_config(stack).gitops.chart_versions
    assert remote["targetRevision"] == pins["training-operator"]
    project = PROJECTS[app.app["spec"]["project"]]["spec"]
    assert remote["repoURL"] in project["sourceRepos"]
    assert app.app["spec"]["destination"]["namespace"] == "kubeflow"
    assert "ServerSideApply=true" in app.app["spec"]["syncPolicy"]["syncOptions"]
    namespaces = {m["metadata"]["name"] for m in all_manifests(stack) if m["kind"] == "Namespace"}
    assert "kubeflow" in namespaces, "the security baseline owns the operator's namespace"


def test_priority_order_of_the_layers() -> None:
    docs = yaml.safe_load_all((PLATFORM / "addons/security-baseline/base/priority-classes.yaml").read_text())
    value = {d["metadata"]["name"]: d["value"] for d in docs}
    order = [
        "cdao-platform-critical",
        "cdao-production-inference",
        "cdao-training",
        "cdao-workload-default",
        "cdao-research",
        "cdao-batch-preemptible",
    ]
    assert [value[n] for n in order] == sorted(value.values(), reverse=True)
    assert sorted(value) == sorted(order)


# --------------------------------------------------------------------------- MLflow


def test_mlflow_uses_its_own_database_user_and_artifact_prefix(stack: str, apps: dict[str, RenderedApp]) -> None:
    from platform_stack import cluster_secret  # noqa: PLC0415

    secret = cluster_secret(stack)
    app = apps["mlflow"]
    values = app.charts["mlflow"][1]
    postgres = values["backendStore"]["postgres"]
    assert postgres["host"] == _annotation(secret, "db-endpoint")
    assert str(postgres["port"]) == _annotation(secret, "db-port")
    database = postgres["database"]
    assert database != _annotation(secret, "db-name"), "MLflow gets a database of its own"
    # The init Job creates exactly that database and the user the generated secret names.
    job = _one(app.manifests, "Job", "mlflow-database-init")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    db_secret = _one(app.manifests, "ExternalSecret", values["backendStore"]["existingDatabaseSecret"]["name"])
    user = db_secret["spec"]["target"]["template"]["data"]["username"]
    assert f"CREATE DATABASE {database} OWNER {user}" in script and f"ALTER ROLE {user}" in script
    job_env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job_env["PGHOST"] == postgres["host"] and job_env["PGDATABASE"] == _annotation(secret, "db-name")
    admin = _one(app.manifests, "ExternalSecret", "mlflow-db-admin")
    assert {d["remoteRef"]["key"] for d in admin["spec"]["data"]} == {_annotation(secret, "db-master-secret-arn")}
    # Artifacts: the prefix the IRSA role `mlflow` can reach (infra/lib/mlops.py), served by the server.
    s3 = values["artifactRoot"]["s3"]
    assert s3["bucket"] == _annotation(secret, "bucket-userdata")
    assert f"{s3['path']}/" == MLFLOW_ARTIFACTS_PREFIX
    assert values["artifactRoot"]["proxiedArtifactStorage"] is True
    sa = _role("mlflow")
    assert app.app["spec"]["destination"]["namespace"] == sa.namespace
    assert values["serviceAccount"]["name"] == sa.name
    assert values["serviceAccount"]["annotations"][IRSA] == _annotation(secret, "role-arn-mlflow")


def test_mlflow_is_behind_the_internal_ingress_at_the_sdk_uri(stack: str, apps: dict[str, RenderedApp]) -> None:
    from cdao_sdk.settings import IN_CLUSTER_MLFLOW_TRACKING_URI  # noqa: PLC0415
    from platform_stack import cluster_secret  # noqa: PLC0415

    secret = cluster_secret(stack)
    values = apps["mlflow"].charts["mlflow"][1]
    ingress = values["ingress"]
    flyte_ingress = apps["flyte"].charts["flyte-core"][1]["common"]["ingress"]["annotations"]
    assert ingress["annotations"]["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert (
        ingress["annotations"]["alb.ingress.kubernetes.io/group.name"]
        == flyte_ingress["alb.ingress.kubernetes.io/group.name"]
    )
    (host,) = ingress["hosts"]
    assert host["host"] == _annotation(secret, "flyte-hostname")
    # The server serves at its root (no static prefix); the ALB strips /mlflow (test_endpoints.py
    # test_alb_paths_reach_the_server_routes follows the paths).
    assert "staticPrefix" not in values["extraArgs"]
    assert [p["path"] for p in host["paths"]] == ["/mlflow/*"]
    release = apps["mlflow"].charts["mlflow"][0]["helm"]["releaseName"]
    in_cluster = f"http://{release}.{apps['mlflow'].app['spec']['destination']['namespace']}.svc:5000"
    assert in_cluster == IN_CLUSTER_MLFLOW_TRACKING_URI


# --------------------------------------------------------------------------- backups of volumes


def test_backed_up_storage_class_carries_the_backup_selection_tags(stack: str) -> None:
    from platform_stack import cluster_secret  # noqa: PLC0415

    storage_class = _one(all_manifests(stack), "StorageClass", "gp3-backup")
    tags = dict(v.split("=", 1) for k, v in storage_class["parameters"].items() if k.startswith("tagSpecification_"))
    assert tags == {BACKUP_TAG: "true", CLUSTER_TAG: cluster_name(stack_config(stack))}
    assert _annotation(cluster_secret(stack), "cluster-name") == cluster_name(stack_config(stack))
    assert storage_class["reclaimPolicy"] == "Retain"
    assert storage_class["provisioner"] == "ebs.csi.aws.com"


def test_task_namespaces_may_reach_mlflow_and_vllm(apps: dict[str, RenderedApp]) -> None:
    """Flyte's task namespaces are default-deny: their egress must name the two services' ports."""
    values = apps["flyte"].charts["flyte-core"][1]
    (template,) = [t for t in values["cluster_resource_manager"]["templates"] if t["key"] == "af_allow_task_traffic"]
    policy = yaml.safe_load(template["value"].replace("{{ namespace }}", "ns"))
    allowed = {
        (peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], port["port"])
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "namespaceSelector" in peer
        for port in rule.get("ports", [])
    }
    mlflow_port = 5000  # the chart's default Service port, which IN_CLUSTER_MLFLOW names
    assert ("mlflow", mlflow_port) in allowed
    if "inference" in apps:
        service = _one(apps["inference"].manifests, "Service", "vllm")
        assert {("inference", p["port"]) for p in service["spec"]["ports"]} <= allowed


def test_scaled_object_crd_rejects_a_trigger_without_its_type() -> None:
    """KEDA's CRD (kedacore/keda v2.18.2 config/crd/bases) requires each trigger's type; a trigger's
    metadata is a free string map that only the scaler checks at run time."""
    from platform_checks import validate  # noqa: PLC0415
    from platform_render import load_yaml_documents  # noqa: PLC0415

    (scaled,) = load_yaml_documents(PLATFORM / "addons/inference/profiles/prod/scaled-object.yaml")
    validate(scaled)
    del scaled["spec"]["triggers"][0]["type"]
    with pytest.raises(Exception, match="'type' is a required property"):
        validate(scaled)


def test_sdk_refuses_more_than_one_gpu_on_a_time_sliced_pool() -> None:
    """Time-slicing hands out replicas of a GPU: a 2-GPU request would be two slices of one GPU
    (NVIDIA/gpu-operator #386), which the device plugin refuses (failRequestsGreaterThanOne), so the
    SDK says so when the task is declared; Codeweave rents whole GPUs and takes any count."""
    from cdao_sdk import gpu_task  # noqa: PLC0415

    def train() -> None: ...

    with pytest.raises(ValueError, match="time-sliced"):
        gpu_task(gpu_type="a100", gpus=2)(train)
    gpu_task(gpu_type="a100", gpus=1)(train)
    gpu_task(platform="codeweave", gpu_type="nvidia-a100-80gb", gpus=2)(train)


def test_mlflow_accepts_the_host_headers_of_its_clients(stack: str, apps: dict[str, RenderedApp]) -> None:
    """Every client reaches MLflow under a name its Host check accepts: tasks and notebooks through
    the in-cluster URI the SDK documents, browsers through Flyte's ALB host, and Prometheus's scrape of
    /metrics by pod IP and container port (any address of the stack's VPC CIDR, where the VPC CNI takes
    pod IPs from). The kubelet's probes and the ALB's health checks ask /health, which MLflow exempts
    from the check (mlflow-3.14.0 wheel, mlflow/server/security_utils.py HEALTH_ENDPOINTS, used by
    fastapi_security.py). MLflow's default accepts no DNS name at all."""
    from platform_stack import cluster_secret  # noqa: PLC0415

    if "mlflow" not in apps:
        pytest.skip(f"mlflow is off in {stack}")
    from upstream import facts, mlflow_accepts_host  # noqa: PLC0415

    facts_ = facts("mlflow-server")
    values = apps["mlflow"].charts["mlflow"][1]
    option = values["extraArgs"].get(facts_["option"])
    assert option is not None or facts_["default_accepts_dns_names"], "MLflow would refuse every DNS name"
    allowed = [h.strip() for h in str(option).split(",")]
    release = apps["mlflow"].charts["mlflow"][0]["helm"]["releaseName"]
    namespace = apps["mlflow"].app["spec"]["destination"]["namespace"]
    from cdao_sdk.settings import IN_CLUSTER_MLFLOW_TRACKING_URI  # noqa: PLC0415
    from chart_cache import default_values  # noqa: PLC0415
    from platform_render import _merge  # noqa: PLC0415

    source = apps["mlflow"].charts["mlflow"][0]
    port = _merge(default_values("mlflow", source["targetRevision"]), values)["service"]["port"]
    # The port the SDK's URI names is the Service's (the chart's default is 80, not MLflow's 5000).
    assert f"http://{release}.{namespace}.svc:{port}" == IN_CLUSTER_MLFLOW_TRACKING_URI
    from platform_stack import stack_config  # noqa: PLC0415

    vpc = stack_config(stack).network.vpc_cidr
    container_port = _merge(default_values("mlflow", source["targetRevision"]), values)["service"]["containerPort"]
    hosts = {
        f"{release}.{namespace}.svc:{port}",  # the SDK's MLFLOW_TRACKING_URI (cdao_sdk.settings)
        _annotation(cluster_secret(stack), "flyte-hostname"),  # the ALB's HTTPS listener, port 443
        *(f"{vpc[i]}:{container_port}" for i in (0, vpc.num_addresses // 2, -1)),  # Prometheus, by pod IP
    }
    assert {h for h in hosts if not mlflow_accepts_host(allowed, h)} == set()
    # Nothing more: the pod-IP patterns are the stack's VPC CIDR's, through the cluster Secret.
    pod_patterns = _annotation(cluster_secret(stack), "pod-host-patterns").split(",")
    assert sorted(allowed) == sorted(
        [f"{release}.{namespace}.svc:{port}", _annotation(cluster_secret(stack), "flyte-hostname"), *pod_patterns]
    )


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "100.64.0.0/16", "172.31.128.0/17", "10.1.16.0/20", "192.168.4.0/26"])
def test_pod_host_patterns_match_exactly_the_vpc_cidr(cidr: str) -> None:
    """The cluster Secret's `cdao.io/pod-host-patterns` (MLflow's Host patterns for pod IPs) matches
    every address of any VPC CIDR the stack may have, and nothing next to it."""
    import ipaddress  # noqa: PLC0415

    from upstream import mlflow_accepts_host  # noqa: PLC0415

    from infra.contract import pod_host_patterns  # noqa: PLC0415

    vpc = ipaddress.IPv4Network(cidr)
    allowed = pod_host_patterns(vpc).split(",")
    assert all(mlflow_accepts_host(allowed, f"{vpc[i]}:5000") for i in (0, 1, vpc.num_addresses // 2, -1))
    assert not mlflow_accepts_host(allowed, f"{vpc[0] - 1}:5000")
    assert not mlflow_accepts_host(allowed, f"{vpc[-1] + 1}:5000")
