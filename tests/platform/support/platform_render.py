"""Render platform/ the way Argo CD would, offline: ApplicationSet templates, then kustomize sources.

Why hand-written: there is no Go toolchain, Argo CD library, kustomize or Helm binary on the CI
machines, so the two steps Argo CD performs are reimplemented for exactly the constructs platform/
uses, and anything outside that subset is an error rather than a silent guess.

Go templates (ApplicationSet `goTemplate: true`, `missingkey=error`), the subset supported:
  {{ .a.b }}                          field chain; a missing map key is an error (missingkey=error)
  {{ index X "k" }}                   map lookup; a missing key gives the zero value "" exactly as Go's
                                      `index` does (missingkey does not apply to `index`), unless the
                                      renderer is strict, in which case it is an error
  {{ index X (printf "f-%s" .p) }}   parenthesised calls and printf with %s / %d
  {{ index (splitList "," X) 0 }}     Sprig's splitList, and index of a list by position (out of
                                      range is an error, as in Go)
  {{ range $v := LIST }}..{{ end }}   range over a list, the element read as `$v` (Go also sets `.`
                                      to it, which the subset does not: `.` stays the parameters)
  {{ if X }}..{{ end }}               X's truth as text/template has it (no else)
  "literal"                           string literals, also as arguments
Argo CD renders every string of the template separately (metadata, spec, helm.values, patches), so
that is what `render_template` does.

Kustomize (Argo CD `source.kustomize`), the subset supported: a kustomization's `resources`
(files and directories), then the Application's `namespace`, `images` and inline JSON 6902
`patches` (add / replace, JSON pointers with ~0 ~1 escapes and `-` to append).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import cdao_stacks

REPO_ROOT = Path(__file__).resolve().parents[3]
PLATFORM = REPO_ROOT / "platform"
APPSETS_DIR = PLATFORM / "bootstrap" / "appsets"
PROJECTS_DIR = PLATFORM / "bootstrap" / "projects"


class TemplateError(ValueError):
    """A template uses something outside the supported subset, or a key is missing."""


# --------------------------------------------------------------------------- Go template subset

_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<open>\()|(?P<close>\))|(?P<word>[^\s()"]+))')


def _tokens(expr: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse {expr!r} at {expr[pos:]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0

    def parse_command(self, stop_at_close: bool = False) -> list[Any]:
        args: list[Any] = []
        while self.pos < len(self.tokens):
            kind, value = self.tokens[self.pos]
            if kind == "close":
                if not stop_at_close:
                    raise TemplateError("unbalanced ')'")
                return args
            self.pos += 1
            if kind == "open":
                args.append(("call", self.parse_command(stop_at_close=True)))
                if self.pos >= len(self.tokens) or self.tokens[self.pos][0] != "close":
                    raise TemplateError("unbalanced '('")
                self.pos += 1
            elif kind == "str":
                args.append(("lit", bytes(value[1:-1], "utf-8").decode("unicode_escape")))
            elif value.startswith("."):
                args.append(("field", value))
            elif re.fullmatch(r"\$\w+", value):
                args.append(("var", value))
            elif re.fullmatch(r"-?[0-9]+", value):
                args.append(("lit", int(value)))
            elif value == "|":
                raise TemplateError("pipelines are outside the supported subset")
            else:
                args.append(("ident", value))
        if stop_at_close:
            raise TemplateError("unbalanced '('")
        return args


@dataclass
class GoTemplate:
    """Renders the documented subset of Go's text/template with `missingkey=error`."""

    strict_index: bool = False

    def render(self, text: str, params: Mapping[str, Any]) -> str:
        # Go's lexer trims first: `{{-` eats the whitespace before the action, `-}}` the whitespace after.
        nodes: list[tuple[str, str]] = []
        pos, trim_next = 0, False
        for m in _ACTION.finditer(text):
            left = text[pos : m.start()]
            if trim_next:
                left = left.lstrip()
            if m.group(1):
                left = left.rstrip()
            nodes += [("text", left), ("action", m.group(2).strip())]
            pos, trim_next = m.end(), bool(m.group(3))
        tail = text[pos:]
        nodes.append(("text", tail.lstrip() if trim_next else tail))
        body, end = self._block(nodes, 0)
        if end != len(nodes):
            raise TemplateError("{{ end }} without a {{ range }}")
        return self._run(body, params, {})

    def _block(self, nodes: list[tuple[str, str]], start: int) -> tuple[list[Any], int]:
        """Nodes up to the matching `{{ end }}` (or the text's end), with `range` blocks nested."""
        out: list[Any] = []
        i = start
        while i < len(nodes):
            kind, value = nodes[i]
            if kind == "action" and value == "end":
                return out, i
            if kind == "action" and value.split(None, 1)[0] == "if":
                inner, end = self._block(nodes, i + 1)
                if end == len(nodes):
                    raise TemplateError(f"{{{{ {value} }}}} has no {{{{ end }}}}")
                out.append(("if", _Parser(_tokens(value[2:])).parse_command(), inner))
                i = end + 1
                continue
            if kind == "action" and value.split(None, 1)[0] == "range":
                m = re.fullmatch(r"range\s+(\$\w+)\s*:=\s*(.+)", value, re.S)
                if not m:
                    raise TemplateError(f"only `range $var := ...` is in the supported subset: {value!r}")
                inner, end = self._block(nodes, i + 1)
                if end == len(nodes):
                    raise TemplateError(f"{{{{ {value} }}}} has no {{{{ end }}}}")
                out.append(("range", m[1], _Parser(_tokens(m[2])).parse_command(), inner))
                i = end + 1
                continue
            out.append((kind, value if kind == "text" else _Parser(_tokens(value)).parse_command()))
            i += 1
        return out, i

    def _run(self, body: list[Any], params: Mapping[str, Any], variables: Mapping[str, Any]) -> str:
        out = []
        for node in body:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "action":
                out.append(_show(self._eval_command(node[1], params, variables)))
            elif node[0] == "if":
                _, command, inner = node
                # text/template: false, 0, nil and empty strings, lists and maps are false.
                if self._eval_command(command, params, variables) not in (False, 0, None, "", [], {}):
                    out.append(self._run(inner, params, variables))
            else:
                _, name, command, inner = node
                items = self._eval_command(command, params, variables)
                if not isinstance(items, list):
                    raise TemplateError(f"range over a {type(items).__name__}: only lists are in the subset")
                # Go also rebinds `.` to the element; this subset keeps `.` and reads the element by name.
                out += [self._run(inner, params, {**variables, name: item}) for item in items]
        return "".join(out)

    def _eval_arg(self, arg: tuple[str, Any], params: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
        kind, value = arg
        if kind == "lit":
            return value
        if kind == "field":
            return _field(params, value)
        if kind == "var":
            if value not in variables:
                raise TemplateError(f"undefined variable {value}")
            return variables[value]
        if kind == "call":
            return self._eval_command(value, params, variables)
        raise TemplateError(f"unsupported argument {value!r}")

    def _eval_command(self, args: list[Any], params: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
        if not args:
            raise TemplateError("empty action")
        head_kind, head = args[0]
        if head_kind != "ident":
            if len(args) != 1:
                raise TemplateError(f"{head!r} is not a function")
            return self._eval_arg(args[0], params, variables)
        values = [self._eval_arg(a, params, variables) for a in args[1:]]
        function = self._functions().get(head)
        if function is None:
            raise TemplateError(f"function {head!r} is outside the supported subset")
        return function(*values)

    def _functions(self) -> dict[str, Callable[..., Any]]:
        return {"index": self._index, "printf": _printf, "splitList": _split_list}

    def _index(self, container: Any, *keys: Any) -> Any:
        if not keys:
            raise TemplateError("index needs a key")
        item = container
        for key in keys:
            if isinstance(item, list):
                if not isinstance(key, int) or not 0 <= key < len(item):
                    raise TemplateError(f"index out of range: {key!r} of {len(item)} items")
                item = item[key]
                continue
            if not isinstance(item, Mapping):
                raise TemplateError(f"index of non-map {type(item).__name__}")
            if key not in item:
                if self.strict_index:
                    raise TemplateError(f"index: no key {key!r} (Go would render the zero value)")
                return ""
            item = item[key]
        return item


def _field(params: Mapping[str, Any], chain: str) -> Any:
    item: Any = params
    for name in chain.strip(".").split("."):
        if not isinstance(item, Mapping):
            raise TemplateError(f"can't evaluate field {name} in {type(item).__name__}")
        if name not in item:
            raise TemplateError(f"map has no entry for key {name!r} (missingkey=error) in {chain}")
        item = item[name]
    return item


def _printf(fmt: str, *args: Any) -> str:
    if re.search(r"%[^sd%]", fmt):
        raise TemplateError(f"printf verb outside %s/%d in {fmt!r}")
    return fmt % tuple(args)


def _split_list(separator: str, text: str) -> list[str]:
    return text.split(separator)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TemplateError(f"cannot print a {type(value).__name__} into a string field")


def render_template(obj: Any, params: Mapping[str, Any], engine: GoTemplate) -> Any:
    """Every string of an ApplicationSet template rendered, as Argo CD does field by field."""
    if isinstance(obj, str):
        return engine.render(obj, params)
    if isinstance(obj, list):
        return [render_template(v, params, engine) for v in obj]
    if isinstance(obj, dict):
        return {render_template(k, params, engine): render_template(v, params, engine) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------- ApplicationSets


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    # Read as the CLI reads platform/ (cdao_doctor's ApplicationSets): the C safe loader, the suite's
    # hottest parse (thousands of rendered documents).
    return [d for d in cdao_stacks.load_yaml_all(path.read_text()) if d is not None]


def application_sets() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(APPSETS_DIR.glob("*.yaml")):
        docs += [d for d in load_yaml_documents(path) if d.get("kind") == "ApplicationSet"]
    return docs


def app_projects() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(PROJECTS_DIR.glob("*.yaml")):
        docs += [d for d in load_yaml_documents(path) if d.get("kind") == "AppProject"]
    return docs


def cluster_params(secret: Mapping[str, Any]) -> dict[str, Any]:
    """What Argo CD's cluster generator exposes for one cluster Secret in Go template mode."""
    metadata = secret["metadata"]
    name = secret["stringData"]["name"]
    return {
        "name": name,
        "nameNormalized": re.sub(r"[^a-z0-9.-]", "-", name.lower()),
        "server": secret["stringData"]["server"],
        "metadata": {
            "labels": dict(metadata.get("labels", {})),
            "annotations": dict(metadata.get("annotations", {})),
        },
    }


def _selected(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    unsupported = set(selector) - {"matchLabels"}
    if unsupported:
        raise TemplateError(f"cluster selector fields outside the supported subset: {sorted(unsupported)}")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def generator_params(generator: Mapping[str, Any], secret: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Parameter sets of one generator (clusters, list, or a matrix of the two) for one cluster."""
    if set(generator) == {"clusters"}:
        cluster = cluster_params(secret)
        selector = generator["clusters"].get("selector", {})
        return [cluster] if _selected(selector, cluster["metadata"]["labels"]) else []
    if set(generator) == {"list"}:
        return [dict(e) for e in generator["list"]["elements"]]
    if set(generator) == {"matrix"}:
        children = generator["matrix"]["generators"]
        if len(children) != 2:
            raise TemplateError("matrix generators here combine exactly two generators")
        combined = []
        for left in generator_params(children[0], secret):
            for right in generator_params(children[1], secret):
                overlap = set(left) & set(right)
                if overlap:
                    raise TemplateError(f"matrix parameters collide: {sorted(overlap)}")
                combined.append({**left, **right})
        return combined
    raise TemplateError(f"generator outside the supported subset: {sorted(generator)}")


def render_application_set(
    appset: Mapping[str, Any], secret: Mapping[str, Any], engine: GoTemplate
) -> list[dict[str, Any]]:
    spec = appset["spec"]
    if spec.get("goTemplate") is not True or spec.get("goTemplateOptions") != ["missingkey=error"]:
        raise TemplateError(f"{appset['metadata']['name']}: goTemplate with missingkey=error is required")
    apps = []
    for generator in spec["generators"]:
        for params in generator_params(generator, secret):
            rendered = render_template(copy.deepcopy(spec["template"]), params, engine)
            apps.append(
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Application",
                    "metadata": {**rendered["metadata"], "namespace": appset["metadata"]["namespace"]},
                    "spec": rendered["spec"],
                }
            )
    return apps


def sources(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = app["spec"]
    return list(spec["sources"]) if "sources" in spec else [spec["source"]]


# --------------------------------------------------------------------------- kustomize subset

# Kinds kustomize leaves without a namespace (cluster-scoped) among those platform/ uses.
CLUSTER_SCOPED = {
    "Namespace",
    "PriorityClass",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterIssuer",
    "ClusterSecretStore",
    "Bundle",
    "CustomResourceDefinition",
}


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources"}
    if unsupported:
        raise TemplateError(f"{directory}: kustomization fields outside the supported subset: {sorted(unsupported)}")
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        target = (directory / entry).resolve()
        if target.is_dir():
            docs += kustomize_build(target)
        else:
            docs += load_yaml_documents(target)
    return docs


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise TemplateError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_json6902(doc: dict[str, Any], ops: list[Mapping[str, Any]]) -> None:
    for op in ops:
        if op["op"] not in {"add", "replace"}:
            raise TemplateError(f"patch op {op['op']!r} is outside the supported subset")
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        value = copy.deepcopy(op["value"])
        if isinstance(node, list):
            if last == "-":
                if op["op"] != "add":
                    raise TemplateError("'-' only appends")
                node.append(value)
            elif op["op"] == "add":
                node.insert(int(last), value)
            else:
                node[int(last)] = value
        else:
            if op["op"] == "replace" and last not in node:
                raise TemplateError(f"replace of missing {op['path']}")
            node[last] = value


def _set_image(doc: dict[str, Any], name: str, new: str) -> None:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        image = container["image"]
        base = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image
        if base == name:
            container["image"] = new


def kustomize_source(source: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifests Argo CD would apply for a kustomize source of this repository."""
    path = source["path"]
    docs = kustomize_build(REPO_ROOT / path)
    options = source.get("kustomize", {})
    unsupported = set(options) - {"namespace", "images", "patches"}
    if unsupported:
        raise TemplateError(f"{path}: kustomize options outside the supported subset: {sorted(unsupported)}")
    if "namespace" in options:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = options["namespace"]
    for image in options.get("images", []):
        name, _, new = image.partition("=")
        for doc in docs:
            _set_image(doc, name, new)
    for patch in options.get("patches", []):
        target = patch["target"]
        if set(target) - {"kind", "name"}:
            raise TemplateError(f"{path}: patch target fields outside the supported subset: {sorted(target)}")
        # A patch applies to every resource its target selects
        # (https://kubectl.docs.kubernetes.io/references/kustomize/kustomization/patches/); one that
        # selects none is refused here, so a renamed resource cannot silently go unpatched.
        matches = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        if not matches:
            raise TemplateError(f"{path}: patch target {target} matches no resource")
        for match in matches:
            apply_json6902(match, yaml.safe_load(patch["patch"]))
    return docs


# --------------------------------------------------------------------------- Helm sources


def _merge(base: Any, override: Any) -> Any:
    """Helm's values coalescing: maps merge key by key, anything else replaces; null deletes."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(base.get(key), value)
        return merged
    return copy.deepcopy(override)


def helm_values(source: Mapping[str, Any], value_refs: Mapping[str, Path]) -> tuple[dict[str, Any], list[Path]]:
    """The merged values Argo CD hands to Helm (value files in order, then helm.values), and the
    value files it would read. A `$ref/...` path resolves to the repository of the `ref` source."""
    helm = source.get("helm", {})
    merged: dict[str, Any] = {}
    read: list[Path] = []
    for entry in helm.get("valueFiles", []):
        ref, _, rest = entry.partition("/")
        if not ref.startswith("$") or ref[1:] not in value_refs:
            raise TemplateError(f"value file {entry!r} does not use a $ref of this Application")
        path = value_refs[ref[1:]] / rest
        if not path.is_file():
            if helm.get("ignoreMissingValueFiles") is True:
                continue
            raise TemplateError(f"value file {entry!r} does not exist")
        read.append(path)
        merged = _merge(merged, yaml.safe_load(path.read_text()) or {})
    if "valuesObject" in helm:
        merged = _merge(merged, helm["valuesObject"])
    if "values" in helm:
        merged = _merge(merged, yaml.safe_load(helm["values"]) or {})
    return merged, read


@dataclass
class RenderedApp:
    app: dict[str, Any]
    manifests: list[dict[str, Any]]  # from kustomize sources of this repository
    charts: dict[str, tuple[dict[str, Any], dict[str, Any]]]  # chart name -> (source, merged values)
    value_files: list[Path]
    # Kustomize sources of another project's repository at a pinned tag (the training operator's own
    # overlay): not rendered here, checked for their pin and project instead.
    remote_sources: list[dict[str, Any]] = field(default_factory=list)


def render_application(app: Mapping[str, Any], repo_url: str) -> RenderedApp:
    srcs = sources(app)
    value_refs = {s["ref"]: REPO_ROOT for s in srcs if "ref" in s and s["repoURL"] == repo_url}
    manifests: list[dict[str, Any]] = []
    charts: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    value_files: list[Path] = []
    remote: list[dict[str, Any]] = []
    for src in srcs:
        if "chart" in src:
            values, read = helm_values(src, value_refs)
            charts[src["chart"]] = (src, values)
            value_files += read
        elif "path" in src:
            if src["repoURL"] != repo_url:
                if not re.fullmatch(r"v\d+\.\d+\.\d+", src["targetRevision"]):
                    raise TemplateError(f"path source of another repository not pinned to a release tag: {src}")
                remote.append(dict(src))
                continue
            manifests += kustomize_source(src)
        elif "ref" not in src:
            raise TemplateError(f"source of unknown kind: {sorted(src)}")
    return RenderedApp(dict(app), manifests, charts, value_files, remote)


def walk_strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for v in obj:
            yield from walk_strings(v)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_strings(k)
            yield from walk_strings(v)
