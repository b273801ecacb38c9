"""Model packages: what ``sagemaker_batch_transform_task`` serves.

A package is SageMaker's ``model.tar.gz``: the model files at the top, and the inference code at
``code/inference.py`` (``model_fn`` plus ``transform_fn``, or ``input_fn``/``predict_fn``/
``output_fn``). The code travels with the model because the serving container has only the task
image, not the workflow code that ``pyflyte register`` ships to ordinary tasks; so it must import
nothing from ``workflows/``, only the image's libraries.
"""

from __future__ import annotations

import gzip
import importlib.util
import tarfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import flytekit
from cdao_connectors.sagemaker.serving import CODE_PATH, InferenceCodeError, request_function
from flytekit.types.file import FlyteFile


def _check_inference_code(path: Path) -> None:
    """Import the code once here, so a missing function fails the packaging step, not the transform job."""
    spec = importlib.util.spec_from_file_location(f"_cdao_inference_check_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InferenceCodeError(f"{path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    request_function(module, str(path))


def package_model(
    files: Mapping[str, str | Path],
    inference_code: ModuleType | str | Path,
    name: str = "model.tar.gz",
) -> FlyteFile:
    """Write ``files`` (name in the package -> local path) and the inference code into ``model.tar.gz``.

    Written in the running task's working directory; return the result from the task so Flyte
    uploads it, and hand it to a transform task's ``model`` input.
    """
    source = Path(inference_code.__file__ if isinstance(inference_code, ModuleType) else inference_code)  # type: ignore[arg-type]
    if source.suffix != ".py" or not source.is_file():
        raise ValueError(f"package_model inference_code={str(source)!r} must be an existing .py file or module")
    if not files:
        raise ValueError("package_model needs at least one model file")
    for arcname, path in files.items():
        if Path(arcname).is_absolute() or ".." in Path(arcname).parts or Path(arcname).parts[:1] == ("code",):
            raise ValueError(f"package_model file name {arcname!r}: a relative path outside code/ is required")
        if not Path(path).is_file():
            raise ValueError(f"package_model file {arcname!r}: {path} does not exist")
    if not name.endswith(".tar.gz"):
        raise ValueError(f"package_model name={name!r}: SageMaker expects a .tar.gz")
    _check_inference_code(source)
    out = Path(flytekit.current_context().working_directory) / name
    # Same files, same bytes: no timestamps or owners, so a content hash of the package (the
    # cache key of the steps after it) changes only when the model or its code does.
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for arcname, path in sorted(files.items()):
            archive.add(str(path), arcname=arcname, filter=_reproducible)
        archive.add(str(source), arcname=str(CODE_PATH), filter=_reproducible)
    return FlyteFile(str(out))


def _reproducible(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info
