"""Every stack's deploy parses with the config code of the revision it runs.

A pinned stack (staging, prod) runs the `infra/` of its pin, whose config rejects unknown keys, on the
stack file deploy.yml writes into the pin's tree (`cdao stack-revision --stack-file`,
cdao_cli/stack_revision.py deployed_stack_file). This runs the *pin's own* `infra/config.py` (exported
from git at the pin, with its imports) on that file, so a change that would make the next deploy of
staging or prod fail at its pin fails here first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import cdao_stacks
from cdao_cli import stack_revision

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: the pin's `infra` package must not meet this checkout's. The engine
# hands the program every config value, secrets decrypted; the repository's files carry no secret
# (they are set per stack with `pulumi config set --secret`), so, as the offline plan does
# (cdao_cli/plan/runner.py read_stack_file), a stand-in takes each `secure:` value and each secret
# key the pin's config requires (its own SECRET_KEYS).
_PARSE_WITH_PIN = """
import json, sys
import yaml
sys.path.insert(0, sys.argv[1])
from infra.config import NAMESPACE, SECRET_KEYS, ConfigError, parse_stack_config
problems = {}
for stack, text in json.loads(sys.stdin.read()).items():
    raw = {}
    for key, value in (yaml.safe_load(text).get("config") or {}).items():
        secure = isinstance(value, dict) and set(value) == {"secure"}
        raw[key] = "stand-in-secret" if secure else value
    for key in SECRET_KEYS:
        raw.setdefault(f"{NAMESPACE}:{key}", "stand-in-secret")
    try:
        parse_stack_config(stack, raw)
    except ConfigError as exc:
        problems[stack] = str(exc)
print(json.dumps(problems))
"""


def _parse_with_code_of(revision: str, files: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """{stack: error} of `revision`'s infra/config.py parsing each stack file text."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "infra"],
        check=True,
        capture_output=True,
    ).stdout
    tree = tmp_path / revision
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_WITH_PIN, str(tree)],
        input=json.dumps(files),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)


def test_the_stack_file_each_deploy_writes_parses_with_the_config_code_of_its_pin(tmp_path):
    """One interpreter per distinct pin, importing the pin's pydantic models (a few seconds on a busy
    machine): nothing faster runs the pin's own parser. Alongside each pinned file goes a copy with a
    key no config knows, which the pin's code must refuse: the check can fail."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    by_pin: dict[str, dict[str, str]] = {}
    for stack in cdao_stacks.load(ROOT / "environments").promotion_order:
        revision = stack_revision.revision_at(ROOT, stack, head)
        by_pin.setdefault(revision, {})[stack] = stack_revision.deployed_stack_file(ROOT, stack, head)
    # dev runs `head` itself, whose parser revision_at (pins_at) just ran.
    by_pin.pop(head, None)
    assert by_pin, "no stack is pinned: nothing to check against an older revision's code"
    problems = {}
    for revision, files in by_pin.items():
        stack = next(iter(files))
        unknown = files[stack].replace("config:\n", "config:\n  cdao:notAKeyOfAnyRevision: 1\n", 1)
        problems.update(_parse_with_code_of(revision, {**files, f"{stack}-with-an-unknown-key": unknown}, tmp_path))
    refused = {stack for stack, problem in problems.items() if "cdao:notAKeyOfAnyRevision" in problem}
    assert refused == {f"{next(iter(files))}-with-an-unknown-key" for files in by_pin.values()}
    assert {stack: problem for stack, problem in problems.items() if stack not in refused} == {}


def test_a_stack_file_parsed_again_is_not_the_edited_document_of_an_earlier_parse():
    """stack_revision parses each text once and hands out copies (deployed_stack_file edits the pin's
    document): an edit made by one caller must not reach the next parse of the same text."""
    text = (ROOT / "environments" / "Pulumi.prod.yaml").read_text()
    first = stack_revision._document(text, "prod")
    first["config"]["cdao:gitops"]["revision"] = "edited"
    first["edited"] = True
    again = stack_revision._document(text, "prod")
    assert "edited" not in again
    assert again["config"]["cdao:gitops"]["revision"] != "edited"
