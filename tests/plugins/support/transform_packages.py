"""Model packages for the batch-transform tests: inference code as SageMaker's containers expect it."""

from __future__ import annotations

import json
import tarfile
import textwrap
from pathlib import Path

# Scores a CSV line as the dot product of its numbers with the package's weights, and appends how
# many records arrived in the same request, which makes SageMaker's batching observable.
LINEAR = textwrap.dedent(
    """
    import json, os
    from pathlib import Path

    def model_fn(model_dir):
        return json.loads((Path(model_dir) / "weights.json").read_text())

    def transform_fn(weights, body, content_type, accept):
        if body == b"explode":
            raise RuntimeError("the model cannot read 'explode'")
        lines = body.decode().split("\\n")
        out = []
        for line in lines:
            values = [float(v) for v in line.split(",")]
            if len(values) != len(weights):
                raise ValueError(f"{len(values)} features, expected {len(weights)}")
            out.append(f"{sum(w * v for w, v in zip(weights, values)):g},{len(lines)}")
        return "\\n".join(out) + "\\n"
    """
)


def build_package(tmp_path: Path, code: str = LINEAR, weights: list[float] | None = None) -> Path:
    """``model.tar.gz`` with ``weights.json`` and ``code/inference.py``."""
    src = tmp_path / "pkg"
    (src / "code").mkdir(parents=True)
    (src / "code" / "inference.py").write_text(code)
    (src / "weights.json").write_text(json.dumps(weights or [1.0, 10.0]))
    package = tmp_path / "model.tar.gz"
    with tarfile.open(package, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(src)))
    return package
