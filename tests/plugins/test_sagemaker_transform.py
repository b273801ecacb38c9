"""Batch transform of a model package: the serving contract, SageMaker's data path, packaging."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cdao_connectors.sagemaker.serving import MODEL_DIR_ENV, PORT_ENV, READY_PREFIX, InferenceCodeError
from cdao_connectors.sagemaker.transform import BatchTransform, LocalServer, TransformError, run_locally
from cdao_sdk import package_model
from transform_packages import LINEAR, build_package

# One answer line per record, whatever the record holds: for payload-size tests.
COUNTING = textwrap.dedent(
    """
    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return body.decode().split("\\n")

    def predict_fn(records, model):
        return [str(len(records))] * len(records)

    def output_fn(prediction, accept):
        return "\\n".join(prediction) + "\\n"
    """
)


def _config(**overrides: object) -> BatchTransform:
    values: dict[str, object] = {
        "execution_role_arn": "arn:aws:iam::123456789012:role/sm",
        "region": "us-east-1",
        "output_s3_path": "s3://bucket/transform",
    }
    values.update(overrides)
    return BatchTransform(**values)  # type: ignore[arg-type]


def _package(tmp_path: Path, code: str) -> Path:
    return build_package(tmp_path, code)


def _unpacked(tmp_path: Path, code: str) -> Path:
    model_dir = tmp_path / "model"
    with tarfile.open(_package(tmp_path, code)) as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310  (the test's own 127.0.0.1 server)
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_server_answers_sagemakers_routes(tmp_path: Path) -> None:
    with LocalServer(_unpacked(tmp_path, LINEAR), {}) as server:
        assert _get(f"{server.url}/ping") == 200
        assert _get(f"{server.url}/metrics") == 404
        assert server.invoke(b"1,2\n3,4", "text/csv", "text/csv", timeout=10) == b"21,2\n43,2\n"
        # A failing request is a 500 whose body names the error: SageMaker reports that body.
        with pytest.raises(TransformError, match=r"answered 500: RuntimeError: the model cannot read 'explode'"):
            server.invoke(b"explode", "text/csv", "text/csv", timeout=10)
        assert _get(f"{server.url}/ping") == 200  # one bad request does not take the model down


def test_a_chunked_request_is_read_whole(tmp_path: Path) -> None:
    def chunks():
        yield b"1,2\n"
        yield b"3,4"

    with LocalServer(_unpacked(tmp_path, LINEAR), {}) as server:
        request = urllib.request.Request(  # noqa: S310  (the test's own 127.0.0.1 server)
            f"{server.url}/invocations", data=chunks(), headers={"Content-Type": "text/csv", "Accept": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.read() == b"21,2\n43,2\n"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("def transform_fn(m, b, c, a):\n    return b\n", "defines no model_fn"),
        ("def model_fn(d):\n    return 1\n\ndef predict_fn(x, m):\n    return x\n", "lacks ['input_fn', 'output_fn']"),
        (
            "def model_fn(d):\n    raise OSError('weights are missing')\ndef transform_fn(m, b, c, a):\n    return b\n",
            "OSError: weights are missing",
        ),
    ],
)
def test_incomplete_inference_code_stops_the_server_with_the_reason(tmp_path: Path, code: str, message: str) -> None:
    with pytest.raises(TransformError, match=r"did not start") as err:
        LocalServer(_unpacked(tmp_path, code), {})
    assert message in str(err.value)


def test_a_package_asking_for_installs_at_start_is_refused(tmp_path: Path) -> None:
    model_dir = _unpacked(tmp_path, LINEAR)
    (model_dir / "code" / "requirements.txt").write_text("scikit-learn\n")
    with pytest.raises(TransformError, match=r"installs nothing at start"):
        LocalServer(model_dir, {})


def test_filters_join_and_output_names_follow_sagemaker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "later").mkdir(parents=True)
    (data / "a.csv").write_text("id-1,1,2\nid-2,3,4\n")
    (data / "later" / "b.csv").write_text("id-3,5,6")  # no final newline: still one record
    out = tmp_path / "out"
    config = _config(input_filter="$[1:]", join_source="Input", output_filter="$[0,-2]")
    run_locally(config, _package(tmp_path, LINEAR), data, {}, out)

    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["a.csv.out", "later/b.csv.out"]
    # The model saw only the features (21 = 1 + 10*2), and each output row starts with its id.
    assert (out / "a.csv.out").read_text() == "id-1,21\nid-2,43\n"
    assert (out / "later" / "b.csv.out").read_text() == "id-3,65\n"


def test_quoted_csv_fields_survive_the_join(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text('"Smith, J",1,2\n')
    out = tmp_path / "out"
    run_locally(_config(input_filter="$[1:]", join_source="Input"), _package(tmp_path, LINEAR), data, {}, out)
    assert (out / "rows.csv.out").read_text() == '"Smith, J",1,2,21,1\n'


def test_multirecord_fills_requests_up_to_max_payload(tmp_path: Path) -> None:
    record = "x" * 200_000  # four records and their newlines fit in 1 MB (10^6 bytes), five do not
    data = tmp_path / "big.csv"
    data.write_text("\n".join([record] * 11) + "\n")
    package = _package(tmp_path, COUNTING)

    run_locally(_config(max_payload_mb=1), package, data, {}, tmp_path / "multi")
    assert (tmp_path / "multi" / "big.csv.out").read_text().split() == ["4"] * 8 + ["3"] * 3

    run_locally(_config(strategy="SingleRecord"), package, data, {}, tmp_path / "single")
    assert (tmp_path / "single" / "big.csv.out").read_text().split() == ["1"] * 11


def test_a_record_larger_than_max_payload_fails(tmp_path: Path) -> None:
    data = tmp_path / "huge.csv"
    data.write_text("y" * (1024 * 1024 + 1) + "\n")
    with pytest.raises(TransformError, match=r"huge.csv: record 1 is 1048578 bytes, over MaxPayloadInMB=1"):
        run_locally(_config(max_payload_mb=1), _package(tmp_path, COUNTING), data, {}, tmp_path / "out")


def test_joining_needs_one_answer_line_per_record(tmp_path: Path) -> None:
    short = "def model_fn(d):\n    return None\n\ndef transform_fn(m, body, c, a):\n    return '1\\n'\n"
    data = tmp_path / "two.csv"
    data.write_text("a,1\nb,2\n")
    with pytest.raises(TransformError, match=r"answered 1 lines for 2 records"):
        run_locally(_config(join_source="Input"), _package(tmp_path, short), data, {}, tmp_path / "out")


def test_a_filter_outside_the_record_fails_with_its_place(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("a,1,2\n")
    with pytest.raises(TransformError, match=r"rows.csv: filter '\$\[0,7\]' picks column 7 of 5 columns"):
        run_locally(
            _config(input_filter="$[1:]", join_source="Input", output_filter="$[0,7]"),
            _package(tmp_path, LINEAR),
            data,
            {},
            tmp_path / "out",
        )


def test_job_environment_reaches_the_inference_code(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import os
        def model_fn(d):
            return os.environ["THRESHOLD"]
        def transform_fn(threshold, body, c, a):
            return "\\n".join(threshold for _ in body.decode().split("\\n")) + "\\n"
        """
    )
    data = tmp_path / "rows.csv"
    data.write_text("1\n2\n")
    run_locally(_config(), _package(tmp_path, code), data, {"THRESHOLD": "0.7"}, tmp_path / "out")
    assert (tmp_path / "out" / "rows.csv.out").read_text() == "0.7\n0.7\n"


def test_something_other_than_a_tarball_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "model.json"
    bogus.write_text("{}")
    with pytest.raises(TransformError, match=r"must be a model.tar.gz package"):
        run_locally(_config(), bogus, bogus, {}, tmp_path / "out")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_filter": "$.features"}, "input_filter='$.features'"),
        ({"output_filter": "$[a]"}, "output_filter='$[a]'"),
        ({"content_type": "application/json", "join_source": "Input"}, "need content_type='text/csv'"),
        ({"strategy": "Bulk"}, "strategy='Bulk'"),
        ({"split_type": "RecordIO"}, "split_type='RecordIO'"),
        ({"split_type": "None"}, "MultiRecord' needs split_type='Line'"),
        ({"join_source": "Output"}, "join_source='Output'"),
        ({"max_payload_mb": 0}, "max_payload_mb=0"),
        ({"instance_count": 0}, "instance_count=0"),
        ({"instance_type": "m5.large"}, "start 'ml.'"),
        ({"invocation_timeout_seconds": 7200}, "invocation_timeout_seconds=7200"),
        ({"output_s3_path": "bucket/out"}, "must be an s3:// URI"),
        ({"environment": {"BATCH_SIZE": "1"}, "env_inputs": ("batch_size",)}, "['BATCH_SIZE'] are set twice"),
        ({"environment": {f"V{i}": "1" for i in range(17)}}, "17 environment variables"),
        ({"environment": {"1BAD": "x"}}, "['1BAD'] are not valid"),
    ],
)
def test_bad_transform_settings_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("$", r"\$").replace("(", r"\(")):
        _config(**overrides)


def test_package_model_carries_the_inference_code(tmp_path: Path) -> None:
    weights = tmp_path / "weights.json"
    weights.write_text("[2.0, 0.5]")
    code = tmp_path / "linear.py"
    code.write_text(LINEAR)
    package = Path(package_model({"weights.json": weights}, inference_code=code).path)
    with tarfile.open(package) as tar:
        assert sorted(tar.getnames()) == ["code/inference.py", "weights.json"]
    data = tmp_path / "rows.csv"
    data.write_text("4,2\n")
    run_locally(_config(), package, data, {}, tmp_path / "out")
    assert (tmp_path / "out" / "rows.csv.out").read_text() == "9,1\n"


def test_the_same_model_packages_to_the_same_bytes(tmp_path: Path) -> None:
    # Steps after training are cached on the package's content hash; timestamps must not change it.
    weights = tmp_path / "weights.json"
    weights.write_text("[2.0, 0.5]")
    code = tmp_path / "linear.py"
    code.write_text(LINEAR)
    first = Path(package_model({"weights.json": weights}, inference_code=code).path).read_bytes()
    os.utime(weights, (1_000_000_000, 1_000_000_000))
    time.sleep(1.1)  # gzip and tar headers count whole seconds
    second = Path(package_model({"weights.json": weights}, inference_code=code).path).read_bytes()
    assert first == second


def test_package_model_refuses_what_would_fail_the_transform_job(tmp_path: Path) -> None:
    weights = tmp_path / "weights.json"
    weights.write_text("[1]")
    incomplete = tmp_path / "incomplete.py"
    incomplete.write_text("def model_fn(d):\n    return None\n")
    with pytest.raises(InferenceCodeError, match=r"incomplete.py defines neither transform_fn"):
        package_model({"weights.json": weights}, inference_code=incomplete)
    good = tmp_path / "good.py"
    good.write_text(LINEAR)
    with pytest.raises(ValueError, match=r"'code/extra.py': a relative path outside code/"):
        package_model({"code/extra.py": weights}, inference_code=good)
    with pytest.raises(ValueError, match=r"'weights.json': .*missing.json does not exist"):
        package_model({"weights.json": tmp_path / "missing.json"}, inference_code=good)
    with pytest.raises(ValueError, match=r"must be an existing .py file"):
        package_model({"weights.json": weights}, inference_code=tmp_path / "nope.py")


def test_the_installed_serve_command_starts_like_the_container(tmp_path: Path) -> None:
    # What `docker run <image> serve` runs in the task image, with the address SageMaker would use.
    command = Path(sys.executable).parent / "cdao-sagemaker-serve"
    env = {**os.environ, MODEL_DIR_ENV: str(_unpacked(tmp_path, LINEAR)), PORT_ENV: "0"}
    proc = subprocess.Popen([command, "serve", "--host", "127.0.0.1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(READY_PREFIX), line
        assert _get(f"{line[len(READY_PREFIX) :].strip()}/ping") == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_inference_code_that_prints_a_lot_does_not_stall_the_transform(tmp_path: Path) -> None:
    chatty = (
        "def model_fn(d):\n    return None\n\n"
        "def transform_fn(m, body, c, a):\n    print('x' * 300_000)\n    return body\n"
    )
    data = tmp_path / "rows.csv"
    data.write_text("1\n2\n3\n")
    config = _config(strategy="SingleRecord", invocation_timeout_seconds=20)
    run_locally(config, _package(tmp_path, chatty), data, {}, tmp_path / "out")
    assert (tmp_path / "out" / "rows.csv.out").read_text() == "1\n2\n3\n"
