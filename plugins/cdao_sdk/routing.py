"""Which platform runs which task: the routing rules of the CDAO design, in one place.

* ``@task`` / ``@cpu_task`` -> EKS ``cpu`` pool: control-plane and light work stays on the cluster.
* ``@gpu_task(gpu_type="a100", mig_profile=...)`` -> EKS ``a100-mig``: MIG slices only exist there.
* ``@gpu_task(gpu_type="a100"|"h100")`` -> EKS ``a100-timeslice`` / ``h100-timeslice``: the
  cluster's own GPU models run on its pools.
* ``@gpu_task(gpu_type="nvidia-...")`` -> Codeweave: the external GPU cloud's catalogue
  (deep-learning training, GPU inference).
* ``@gpu_task`` / ``@gpu_task(inference=True)`` (no ``gpu_type``) -> Codeweave's default GPU for
  training (``nvidia-a100-80gb``) / for inference (``nvidia-l40s``), the seeds' decision matrix.
* ``@batch_task(spot=True)`` (default) -> AWS Batch spot queue: cost-sensitive, fault-tolerant
  preprocessing; reclaimed jobs are retried.
* ``@batch_task(spot=False)`` -> AWS Batch on-demand queue: time-critical work, guaranteed capacity.
* ``@spark_task(cluster_id=...)`` -> EMR on EC2, steps on that existing cluster.
* ``@spark_task(instance_type=..., instance_count=...)`` -> EMR on EC2, a transient cluster of that
  shape that terminates itself.
* ``@spark_task()`` -> EMR Serverless: nothing to manage when no cluster is named or shaped.
* ``@sagemaker_*`` -> SageMaker: managed training, processing, batch transform and endpoints.

An explicit ``platform=`` always wins; a contradiction (e.g. a MIG profile on Codeweave) is an
error at decoration.

Workload types pick the EKS node pool through the ``workload-type.cdao.io/<type>`` label; a GPU
task's default workload type is ``training`` (``batch-inference`` with ``inference=True``, and
``production-inference`` on MIG slices). ``inference`` and ``workload_type`` must agree with each
other and with the pool: ``inference=True`` on ``h100`` (a training pool) and ``inference=False``
on MIG slices (inference pools) are errors, never a silently different label.
"""

from __future__ import annotations

from cdao_connectors.codeweave.contract import GPU_TYPES as CODEWEAVE_GPU_TYPES

from cdao_sdk.pools import A100_MIG, A100_TIMESLICE, H100_TIMESLICE, NodePool

GPU_PLATFORMS = ("eks", "codeweave")
SPARK_PLATFORMS = ("emr", "emr-serverless")
EKS_GPU_POOLS: dict[str, NodePool] = {"a100": A100_TIMESLICE, "h100": H100_TIMESLICE}
# Codeweave GPU when none is named, by inference: large-memory training GPU / inference GPU.
CODEWEAVE_DEFAULT_GPU: dict[bool, str] = {False: "nvidia-a100-80gb", True: "nvidia-l40s"}
INFERENCE_WORKLOAD_TYPES = ("batch-inference", "production-inference")


def choose_gpu_platform(platform: str | None, gpu_type: str, mig_profile: str | None) -> str:
    if platform is not None:
        if platform not in GPU_PLATFORMS:
            raise ValueError(f"gpu_task platform={platform!r}: expected one of {GPU_PLATFORMS}")
        return platform
    if mig_profile is not None or gpu_type in EKS_GPU_POOLS:
        return "eks"
    if gpu_type in CODEWEAVE_GPU_TYPES:
        return "codeweave"
    raise ValueError(
        f"gpu_task gpu_type={gpu_type!r} is neither an EKS pool GPU {tuple(EKS_GPU_POOLS)} "
        f"nor a Codeweave GPU {CODEWEAVE_GPU_TYPES}"
    )


def choose_eks_gpu_pool(gpu_type: str, mig_profile: str | None) -> NodePool:
    if gpu_type not in EKS_GPU_POOLS:
        raise ValueError(f"gpu_task(platform='eks') gpu_type={gpu_type!r}: the cluster has {tuple(EKS_GPU_POOLS)}")
    if mig_profile is not None:
        if gpu_type != A100_MIG.gpu_model:
            raise ValueError(f"gpu_task mig_profile={mig_profile!r} needs gpu_type='a100' (only A100s are MIG-split)")
        return A100_MIG
    return EKS_GPU_POOLS[gpu_type]


def gpu_workload(pool: NodePool, inference: bool | None, workload_type: str | None) -> str:
    """The workload type an EKS GPU task runs as; ``inference`` None means "not said"."""
    if workload_type is not None:
        if workload_type not in pool.workload_types:
            raise ValueError(f"gpu_task workload_type={workload_type!r}: pool {pool.name} serves {pool.workload_types}")
        if inference is not None and inference != (workload_type in INFERENCE_WORKLOAD_TYPES):
            raise ValueError(
                f"gpu_task inference={inference} contradicts workload_type={workload_type!r} "
                f"(inference workload types: {INFERENCE_WORKLOAD_TYPES})"
            )
        return workload_type
    if inference is None:
        inference = not any(w == "training" for w in pool.workload_types)
    wanted = [w for w in pool.workload_types if (w in INFERENCE_WORKLOAD_TYPES) == inference]
    wanted = [w for w in wanted if w in (*INFERENCE_WORKLOAD_TYPES, "training")]
    if not wanted:
        kind = "inference" if inference else "training"
        raise ValueError(
            f"gpu_task inference={inference}: pool {pool.name} runs no {kind} (it serves {pool.workload_types}); "
            + ("use gpu_type='a100' for inference" if inference else "drop mig_profile to train on a100-timeslice")
        )
    return wanted[0]


def choose_spark_platform(platform: str | None, cluster_id: str | None, transient_shape_given: bool) -> str:
    if platform is not None:
        if platform not in SPARK_PLATFORMS:
            raise ValueError(f"spark_task platform={platform!r}: expected one of {SPARK_PLATFORMS}")
        return platform
    return "emr" if cluster_id is not None or transient_shape_given else "emr-serverless"
