"""Multi-node data-parallel training with PyTorch elastic, tracked in MLflow.

On the cluster, ``train_ddp`` becomes a PyTorchJob of the Kubeflow training operator (Flyte's
``pytorch`` plugin, the training_operator add-on): between one and two pods on the spot
``a100-timeslice`` pool, one GPU and one process each, joined by torch elastic's rendezvous, so a
reclaimed node shrinks the job instead of failing it. Rank 0 checkpoints every epoch through Flyte's
task checkpoint (S3 under the execution's prefix); when spot capacity takes the job down, Flyte's
retry of the interruptible task resumes from the last finished epoch. Locally, ``pyflyte run`` (or a
plain call) runs the same code as a one-node job on the CPU with the gloo backend.

``log_to_mlflow`` then records parameters, per-epoch losses and test metrics in the platform's MLflow
(``MLFLOW_TRACKING_URI``, which ``cdao_sdk.run`` sets from ``configure(mlflow_tracking_uri=...)``;
inside the cluster the mlflow add-on, ``cdao_sdk.settings.IN_CLUSTER_MLFLOW_TRACKING_URI``), uploads the
weights through MLflow's artifact proxy and registers them as a new version of a registered model,
with MLflow's own client (``mlflow-skinny``, the training dependency group, so in the task image).

Data: scikit-learn's bundled 8x8 digits (1,797 images), so nothing is downloaded.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
import typing
from typing import Any

import flytekit
from cdao_sdk import cpu_task, settings, workflow
from cdao_sdk.pools import A100_TIMESLICE, GPU_RESOURCE, NODE_POOL_LABEL, workload_label
from flytekit import PodTemplate
from flytekit.types.file import FlyteFile
from flytekitplugins.kfpytorch import Elastic
from kubernetes.client import V1Container, V1PodSpec, V1ResourceRequirements, V1Toleration

from workflows import _checkpoint, _data
from workflows._data import Digits

CACHE_VERSION = "1.0"
SEED = 7
N_CLASSES = 10

# One GPU per worker pod: with time-slicing a "GPU" is a 1/replicas share, so one process per pod
# keeps a worker's memory to one share.
WORKER_RESOURCES = {"cpu": "8", "memory": "32Gi", GPU_RESOURCE: "1"}
ELASTIC = Elastic(
    # Elastic between one and two nodes: losing a spot node re-forms the group instead of failing.
    nnodes="1:2",
    nproc_per_node=1,
    max_restarts=2,
    start_method="spawn",
    # last_call_timeout: how long a formed group waits for late workers before it starts.
    rdzv_configs={"timeout": 900, "join_timeout": 900, "last_call_timeout": 5},
    # Shared memory comes from the task's `shared_memory` (the plugin's own switch is deprecated).
    increase_shared_mem=False,
)
# Requests equal limits: GPUs cannot be overcommitted, and equal CPU/memory gives Guaranteed QoS.
WORKER_POD = PodTemplate(
    primary_container_name="primary",
    pod_spec=V1PodSpec(
        containers=[
            V1Container(
                name="primary",
                resources=V1ResourceRequirements(requests=WORKER_RESOURCES, limits=WORKER_RESOURCES),
            )
        ],
        node_selector={NODE_POOL_LABEL: A100_TIMESLICE.name, workload_label("training"): "true"},
        tolerations=[V1Toleration(**A100_TIMESLICE.taint.toleration())] if A100_TIMESLICE.taint else None,
        # Training preempts research on the shared pools, never production inference.
        priority_class_name="cdao-training",
    ),
)


def digits() -> Digits:
    """The fixed stratified 75/25 split of the 8x8 digits, as flat rows of 64 pixels."""
    return _data.digits(SEED, images=False)


def build_model() -> Any:
    from torch import nn  # noqa: PLC0415

    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, N_CLASSES))


class EpochLog(typing.NamedTuple):
    trained_epochs: list[int]  # epochs this call ran (a resumed call skips the finished ones)
    losses: list[float]  # mean training loss of every epoch, including restored ones


def train_data_parallel(
    data: Digits, *, epochs: int, lr: float, batch_size: int, checkpoint: Any | None
) -> tuple[Any, EpochLog]:
    """One worker of a data-parallel job: called in every process of the group.

    Each rank trains on its own shard of every epoch's (seeded) permutation; DistributedDataParallel
    averages the gradients, so all ranks hold identical weights. Rank 0 alone writes the checkpoint.
    """
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415
    from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs={epochs} and batch_size={batch_size} must be >= 1")
    if not 0 < lr < 1:
        raise ValueError(f"lr={lr} must be in (0, 1)")
    cuda = torch.cuda.is_available()
    started_group = not dist.is_initialized()
    if started_group:
        # torch elastic (or the PyTorchJob) sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
        torch.manual_seed(SEED)
        model = build_model().to(device)
        ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=0.9)
        start, losses = _checkpoint.restore(checkpoint, model, optimizer, device, lr=lr, batch_size=batch_size)

        x, y = data.x_train.to(device), data.y_train.to(device)
        loss_fn = torch.nn.CrossEntropyLoss()
        trained = []
        for epoch in range(start, epochs):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED + epoch))
            shard = order[rank::world]
            ddp.train()
            total = torch.zeros(2, device=device)  # summed loss, samples
            for batch in shard.split(max(1, batch_size // world)):
                optimizer.zero_grad()
                loss = loss_fn(ddp(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
                total += torch.stack([loss.detach() * len(batch), torch.tensor(float(len(batch)), device=device)])
            dist.all_reduce(total)
            losses.append(float(total[0] / total[1]))
            trained.append(epoch + 1)
            if checkpoint is not None and rank == 0:
                _checkpoint.save(
                    checkpoint, model, optimizer, next_epoch=epoch + 1, losses=losses, lr=lr, batch_size=batch_size
                )
        return model, EpochLog(trained, losses)
    finally:
        if started_group:
            dist.destroy_process_group()


def accuracy(model: Any, x: Any, y: Any) -> float:
    import torch  # noqa: PLC0415

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


class Trained(typing.NamedTuple):
    model: FlyteFile
    losses: list[float]
    test_accuracy: float


@flytekit.task(
    task_config=ELASTIC,
    pod_template=WORKER_POD,
    # NCCL and DataLoader workers exchange tensors through /dev/shm (64 MiB by default).
    shared_memory=True,
    interruptible=True,  # spot capacity: a reclaimed node costs at most one epoch
    retries=3,
    timeout=datetime.timedelta(hours=4),
    cache=True,
    cache_version=CACHE_VERSION,
)
def train_ddp(epochs: int, lr: float, batch_size: int) -> Trained:
    import torch  # noqa: PLC0415

    data = digits()
    model, log = train_data_parallel(
        data, epochs=epochs, lr=lr, batch_size=batch_size, checkpoint=flytekit.current_context().checkpoint
    )
    # Only rank 0's return value becomes the task's output (the plugin discards the others').
    out = os.path.join(tempfile.mkdtemp(prefix="ddp-"), "digits_mlp.pt")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out)
    return Trained(FlyteFile(out), log.losses, accuracy(model.cpu(), data.x_test, data.y_test))


# --------------------------------------------------------------------------- MLflow


class MlflowError(RuntimeError):
    pass


def tracking_uri() -> str:
    return settings.get("mlflow_tracking_uri") or settings.IN_CLUSTER_MLFLOW_TRACKING_URI


def _experiment_id(client: Any, name: str) -> str:
    """The experiment's id, created if missing (a concurrent run may create it first)."""
    from mlflow.exceptions import MlflowException, RestException  # noqa: PLC0415

    try:
        experiment = client.get_experiment_by_name(name)
    except RestException:
        raise
    except MlflowException as exc:
        # No HTTP answer at all (mlflow/utils/rest_utils.py http_request wraps the transport error).
        raise MlflowError(
            f"no MLflow tracking server answers at {client.tracking_uri} ({exc.message}): set "
            f"MLFLOW_TRACKING_URI (or cdao_sdk.configure(mlflow_tracking_uri=...)) to a reachable one; "
            f"the default {settings.IN_CLUSTER_MLFLOW_TRACKING_URI} exists only inside the platform's cluster"
        ) from exc
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _register_version(client: Any, model_name: str, source: str, run_id: str) -> str:
    """A new version of the registered model (created on first use) from the run's artifacts."""
    from mlflow.exceptions import RestException  # noqa: PLC0415

    try:
        client.create_registered_model(model_name)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.create_model_version(model_name, source, run_id=run_id).version


@cpu_task(cpu="1", memory="1Gi", workload_type="mlops", retries=2, timeout=datetime.timedelta(minutes=15))
def log_to_mlflow(  # noqa: PLR0917 - a Flyte task's inputs are its parameters; Flyte passes them by name
    model: FlyteFile,
    losses: list[float],
    test_accuracy: float,
    epochs: int,
    lr: float,
    batch_size: int,
    experiment: str,
    registered_model: str,
) -> str:
    """One MLflow run per training: parameters, loss per epoch, test accuracy, the weights (through the
    server's artifact proxy, so the task needs no S3 rights), and a new version of the registered
    model. Returns that version number. Talks to MLflow with its own client (mlflow-skinny)."""
    # MLflow's maintained client (mlflow-skinny, the training group), imported here so that loading the
    # workflow for registration does not load it; workflows/README.md has the measurements behind it.
    from mlflow import MlflowClient  # noqa: PLC0415
    from mlflow.entities import Metric, Param, RunStatus  # noqa: PLC0415

    uri = tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ctx = flytekit.current_context()
    run = client.create_run(
        _experiment_id(client, experiment),
        run_name=f"{ctx.execution_id.name}-ddp",
        tags={"flyte.execution": ctx.execution_id.name, "cdao.io/pipeline": "distributed_training"},
    ).info
    try:
        now = int(time.time() * 1000)
        metrics = [Metric("train_loss", loss, now, step) for step, loss in enumerate(losses, start=1)]
        metrics.append(Metric("test_accuracy", test_accuracy, now, len(losses)))
        params = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "nnodes": ELASTIC.nnodes}
        client.log_batch(run.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        # The artifact takes the local file's name, which a downloaded FlyteFile does not promise.
        weights = os.path.join(tempfile.mkdtemp(prefix="mlflow-"), "digits_mlp.pt")
        shutil.copyfile(model.download(), weights)
        client.log_artifact(run.run_id, weights, artifact_path="model")
        version = _register_version(client, registered_model, f"{run.artifact_uri}/model", run.run_id)
    except Exception:
        client.set_terminated(run.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run.run_id, RunStatus.to_string(RunStatus.FINISHED))
    return version


class Tracked(typing.NamedTuple):
    model: FlyteFile
    test_accuracy: float
    model_version: str


@workflow
def distributed_training_pipeline(
    epochs: int = 30,
    lr: float = 0.05,
    batch_size: int = 64,
    experiment: str = "digits-ddp",
    registered_model: str = "digits-ddp",
) -> Tracked:
    trained = train_ddp(epochs=epochs, lr=lr, batch_size=batch_size)
    version = log_to_mlflow(
        model=trained.model,
        losses=trained.losses,
        test_accuracy=trained.test_accuracy,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        experiment=experiment,
        registered_model=registered_model,
    )
    return Tracked(model=trained.model, test_accuracy=trained.test_accuracy, model_version=version)
