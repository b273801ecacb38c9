"""The hand-off into the cluster: Argo CD, its cluster Secret (the contract), the root Application.

After this, Pulumi touches nothing inside the cluster: Argo CD reconciles platform/ from Git, reading
every generated value from the cluster Secret's annotations (see infra/contract.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.contract import ARGOCD_NAMESPACE, SECRET_NAME

ARGOCD_CHART_REPO = "https://argoproj.github.io/argo-helm"
# The root Application syncs this folder of platform/ (AppProjects and one ApplicationSet per add-on).
ROOT_APP_PATH = "bootstrap"


@dataclass(frozen=True)
class GitOpsArgs:
    stack: str
    kubeconfig: pulumi.Input[object]
    argocd_chart_version: str
    repo_url: str
    repo_revision: str
    repo_path: str
    labels: Mapping[str, str]
    annotations: Mapping[str, pulumi.Input[str]]
    # The nodes Argo CD runs on (and their DNS): without them its pods stay Pending and the atomic
    # release rolls back. A dependsOn on this component would not reach its children.
    depends_on: Sequence[pulumi.Resource] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class GitOps(pulumi.ComponentResource):
    def __init__(self, name: str, args: GitOpsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:GitOps", name, None, opts)
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.from_input(args.kubeconfig).apply(
                lambda value: value if isinstance(value, str) else json.dumps(value)
            ),
            # Fail the update rather than leave a half-applied object when the API rejects one.
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        namespace = k8s.core.v1.Namespace(
            f"{name}-argocd",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ARGOCD_NAMESPACE,
                labels={
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "environment": args.stack,
                },
            ),
            # The first call to the API: it waits for what lets Pulumi reach it (args.depends_on).
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(args.depends_on)),
        )
        release = k8s.helm.v3.Release(
            f"{name}-argocd",
            name="argocd",
            namespace=namespace.metadata.name,
            chart="argo-cd",
            version=args.argocd_chart_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=ARGOCD_CHART_REPO),
            values={
                "global": {"networkPolicy": {"create": True}},
                "configs": {
                    "params": {"applicationsetcontroller.policy": "sync"},
                    "cm": {
                        # Annotation tracking: resources Helm charts label themselves are not mistaken
                        # for Argo CD's own, so pruning never touches what another tool owns.
                        "application.resourceTrackingMethod": "annotation",
                        "admin.enabled": False,
                    },
                },
                "dex": {"enabled": False},
                "controller": {
                    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
                },
                "server": {"resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}},
                "repoServer": {
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
                },
            },
            atomic=True,
            cleanup_on_fail=True,
            timeout=900,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(args.depends_on)),
        )

        secret = k8s.core.v1.Secret(
            f"{name}-cluster",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SECRET_NAME,
                namespace=namespace.metadata.name,
                labels={"argocd.argoproj.io/secret-type": "cluster", **args.labels},
                annotations=dict(args.annotations),
            ),
            string_data={
                "name": "in-cluster",
                "server": "https://kubernetes.default.svc",
                "config": json.dumps({"tlsClientConfig": {"insecure": False}}),
            },
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[release]),
        )

        # The root Application may only create Argo CD's own objects in Argo CD's namespace: the
        # add-ons' AppProjects and ApplicationSets. Everything else is theirs to scope.
        project = k8s.apiextensions.CustomResource(
            f"{name}-bootstrap-project",
            api_version="argoproj.io/v1alpha1",
            kind="AppProject",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="cdao-bootstrap", namespace=namespace.metadata.name),
            spec={
                "description": "Bootstraps the platform: AppProjects and ApplicationSets only",
                "sourceRepos": [args.repo_url],
                "destinations": [{"server": "https://kubernetes.default.svc", "namespace": ARGOCD_NAMESPACE}],
                "clusterResourceWhitelist": [],
                "namespaceResourceWhitelist": [
                    {"group": "argoproj.io", "kind": "AppProject"},
                    {"group": "argoproj.io", "kind": "ApplicationSet"},
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[release]),
        )
        root = k8s.apiextensions.CustomResource(
            f"{name}-root",
            api_version="argoproj.io/v1alpha1",
            kind="Application",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="cdao-platform",
                namespace=namespace.metadata.name,
                # Deleting the root cascades (foreground) into every ApplicationSet, their Applications
                # and those Applications' resources, so the ALB the load-balancer controller made for
                # Flyte's Ingress is deleted while the cluster still runs, and `pulumi destroy` can then
                # delete the VPC. https://argo-cd.readthedocs.io/en/stable/user-guide/app_deletion/
                finalizers=["resources-finalizer.argocd.argoproj.io"],
            ),
            spec={
                "project": "cdao-bootstrap",
                "source": {
                    "repoURL": args.repo_url,
                    "targetRevision": args.repo_revision,
                    "path": f"{args.repo_path}/{ROOT_APP_PATH}",
                    "directory": {"recurse": True},
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": ARGOCD_NAMESPACE},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["ServerSideApply=true"]},
            },
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[release, secret, project]),
        )
        self.root_application = root.metadata.apply(lambda m: m["name"] if isinstance(m, dict) else m.name)
        self.register_outputs({"argocdRelease": release.name, "clusterSecret": SECRET_NAME})
