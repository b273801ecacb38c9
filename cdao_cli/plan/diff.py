"""`cdao plan --diff <ref>`: what a change does to each stack, the base's plan against the head's.

`diff_stack` compares two plans as `report.build_plan` makes them (the JSON of `cdao plan`):
resources added, removed and changed (by URN; for a changed one, every input path that differs),
the replacements the program's own `replace_on_changes` or the provider's replace-on-change
inputs (`cdao_cli.plan.replacements`) make visible, policy findings new and cleared, and the monthly
cost at idle and at peak with the lines that moved. The renderers turn a list of stack diffs into
text, Markdown (the pull-request comment) and JSON, with a stable order so equal inputs give
byte-equal output.
"""

from __future__ import annotations

import copy
import html
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdao_cli.plan.replacements import FORCE_NEW_INPUTS, SET_INPUTS

# One segment of a property path: a key of a mapping or an index into a list.
Segment = str | int
Path = tuple[Segment, ...]

_MISSING = object()
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Pulumi's property-path syntax (as `replaceOnChanges` and `ignoreChanges` take it):
# `a.b`, `a[0]`, `a["key.with.dots"]`, `a[*]`, `a.*`.
_PATH_TOKEN = re.compile(r'\.?([A-Za-z_*][A-Za-z0-9_$-]*)|\[(\d+|\*)\]|\["((?:[^"\\]|\\.)*)"\]')


@dataclass(frozen=True)
class Base:
    """The git side of a diff: the ref as the user gave it and the commit it named."""

    ref: str
    commit: str


def format_path(path: Path) -> str:
    out = ""
    for seg in path:
        if seg == JSON_SEGMENT:
            out += JSON_SEGMENT
        elif isinstance(seg, int):
            out += f"[{seg}]"
        elif _SIMPLE_KEY.match(seg):
            out += f".{seg}" if out else seg
        else:
            out += "[" + json.dumps(seg) + "]"
    return out


def parse_path(text: str) -> Path:
    """Parse a Pulumi property path (`a.b[0]["c.d"]`, `*` for any key or index)."""
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        match = _PATH_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"not a property path: {text!r} (at {text[pos:]!r})")
        name, index, quoted = match.groups()
        if name is not None:
            segments.append(name)
        elif index is not None:
            segments.append("*" if index == "*" else int(index))
        else:
            segments.append(json.loads(f'"{quoted}"'))
        pos = match.end()
    return tuple(segments)


def _covers(pattern: Path, path: Path) -> bool:
    """True when a change at `path` touches the property `pattern` names (inside it, or all of it)."""
    return all(want in ("*", got) for want, got in zip(pattern, path, strict=False))


# A path segment marking that the value at the path so far is a string holding JSON (an IAM policy,
# a container definition), whose parsed content the rest of the path walks.
JSON_SEGMENT = "(json)"


def _json_container(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict | list) else None
    return None


def _changes(base: Any, head: Any, path: Path = ()) -> Iterator[tuple[Path, Any, Any]]:
    """Every leaf path whose value differs, with the base and head values (_MISSING when absent).

    Strings that both hold a JSON object or array are compared by content, under JSON_SEGMENT,
    as Pulumi's preview shows them, so one widened action of a policy document is what changes.
    """
    base_json, head_json = _json_container(base), _json_container(head)
    if base_json is not None and head_json is not None:
        yield from _changes(base_json, head_json, (*path, JSON_SEGMENT))
    elif isinstance(base, dict) and isinstance(head, dict):
        for key in sorted(set(base) | set(head)):
            yield from _changes(base.get(key, _MISSING), head.get(key, _MISSING), (*path, key))
    elif isinstance(base, list) and isinstance(head, list):
        for i in range(max(len(base), len(head))):
            yield from _changes(
                base[i] if i < len(base) else _MISSING, head[i] if i < len(head) else _MISSING, (*path, i)
            )
    elif base != head or type(base) is not type(head):
        if base is _MISSING and head is _MISSING:
            return
        yield path, base, head


def _value(value: Any) -> Any:
    return None if value is _MISSING else value


def _as_sets(inputs: Any, paths: Iterable[str]) -> Any:
    """A copy of `inputs` with each list at one of `paths` sorted: the provider treats it as a set."""
    inputs = copy.deepcopy(inputs)
    for text in paths:
        *parents, last = parse_path(text)
        node = inputs
        for seg in parents:
            node = node.get(seg) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(last), list):
            node[last] = sorted(node[last], key=lambda v: json.dumps(v, sort_keys=True))
    return inputs


def _resource_changes(base: Mapping[str, Any], head: Mapping[str, Any]) -> dict[str, Any] | None:
    patterns = [parse_path(p) for p in head.get("replace_on_changes", [])]
    patterns += [parse_path(p) for p in FORCE_NEW_INPUTS.get(head["type"], ())]
    # Pulumi leaves these out of updates and replacements alike (pulumi/resource.py, ignore_changes).
    ignored = [parse_path(p) for p in head.get("ignore_changes", [])]
    sets = SET_INPUTS.get(head["type"], ())
    changes = []
    for path, before, after in _changes(_as_sets(base.get("inputs", {}), sets), _as_sets(head.get("inputs", {}), sets)):
        if any(_covers(p, path) for p in ignored):
            continue
        changes.append(
            {
                "path": format_path(path),
                "base": _value(before),
                "head": _value(after),
                "absent_in": "base" if before is _MISSING else "head" if after is _MISSING else None,
                "forces_replacement": any(_covers(p, path) for p in patterns),
            }
        )
    if not changes:
        return None
    return {
        "type": head["type"],
        "name": head["name"],
        "urn": head["urn"],
        "replace": any(c["forces_replacement"] for c in changes),
        "changes": changes,
    }


def _violation_key(v: Mapping[str, Any]) -> tuple[str, ...]:
    # Not the message: it carries values (sizes, counts) that change while the finding stays.
    return (v["rule"], v["level"], v["resource_type"], v["resource_name"])


def _findings(plan: Mapping[str, Any] | None) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    grouped: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for v in plan["policy"]["violations"] if plan else []:
        grouped[_violation_key(v)].append(v)
    return grouped


def _policy_diff(base: Mapping[str, Any] | None, head: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """Findings new, cleared and reworded. A rule may report a resource several times (one finding
    per item), so each (rule, level, resource) holds a multiset of messages: messages only in the
    head are new, only in the base cleared, and as many of each as pair up are one finding reworded."""
    before, after = _findings(base), _findings(head)
    new: list[Any] = []
    cleared: list[Any] = []
    changed: list[Any] = []
    for key in sorted(set(before) | set(after)):
        old_messages = Counter(v["message"] for v in before.get(key, []))
        new_messages = Counter(v["message"] for v in after.get(key, []))
        added = sorted((new_messages - old_messages).elements())
        removed = sorted((old_messages - new_messages).elements())
        pairs = min(len(added), len(removed))
        template = (after.get(key) or before[key])[0]
        for old_message, new_message in zip(removed[:pairs], added[:pairs], strict=True):
            changed.append({**template, "base_messages": [old_message], "head_messages": [new_message]})
        new += [{**after[key][0], "message": m} for m in added[pairs:]]
        cleared += [{**before[key][0], "message": m} for m in removed[pairs:]]
    return {"new": new, "cleared": cleared, "changed": changed}


def _cost_lines(plan: Mapping[str, Any] | None) -> dict[tuple[str, str, int], Mapping[str, Any]]:
    """Cost lines keyed by resource and their order within it (a database has instance and storage)."""
    seen: Counter[tuple[str, str]] = Counter()
    keyed = {}
    for line in plan["cost"]["lines"] if plan else []:
        owner = (line["resource_type"], line["resource_name"])
        keyed[(*owner, seen[owner])] = line
        seen[owner] += 1
    return keyed


def _secret_config(plan: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return plan.get("secret_config", {}) if plan else {}


def _unpriced(plan: Mapping[str, Any] | None) -> list[str]:
    return list(plan["cost"]["unpriced"]) if plan else []


def _money(plan: Mapping[str, Any] | None, key: str) -> float:
    return float(plan["cost"][key]) if plan else 0.0


def _delta(base: float, head: float) -> dict[str, float]:
    return {"base": round(base, 2), "head": round(head, 2), "delta": round(head - base, 2)}


def diff_stack(
    stack: str,
    base: Mapping[str, Any] | None,
    head: Mapping[str, Any] | None,
    *,
    base_error: str | None = None,
    head_error: str | None = None,
) -> dict[str, Any]:
    """Compare one stack's base plan with its head plan.

    `base`/`head` are plans as `report.build_plan` returns them, or None when that side has no
    such stack (a stack file added or removed by the change) or failed (`*_error` says why).
    Returns a dict with `stack`, `status` ("changed", "unchanged", "added", "removed" or "error"),
    `base_error`, `head_error`, `head_summary`, and unless a side failed: `inputs_compared`
    (False when the base's plan predates resource inputs), `resources` (added / removed /
    changed), `policy` (new / cleared findings, and `changed`: the same finding with another
    message) and `cost` (idle and peak as base/head/delta in
    USD per month, the `lines` that moved, and newly unpriced items).
    """
    result: dict[str, Any] = {"stack": stack, "base_error": base_error, "head_error": head_error}
    if base_error or head_error:
        result["status"] = "error"
        result["head_summary"] = _summary(head) if head else None
        return result
    # Pulumi identifies a resource by its URN (a new parent is a delete and a create); plans made
    # before resources carried their URN fall back to type and name.
    by_urn = all("urn" in r for r in (base["resources"] if base else []))

    def key(r: Mapping[str, Any]) -> str:
        return r["urn"] if by_urn else f"{r['type']}::{r['name']}"

    base_resources = {key(r): r for r in base["resources"]} if base else {}
    head_resources = {key(r): r for r in head["resources"]} if head else {}

    def brief(r: Mapping[str, Any]) -> dict[str, str | None]:
        return {"type": r["type"], "name": r["name"], "urn": r.get("urn")}

    # Plans made before resources carried their inputs can only show what was added or removed.
    inputs_compared = all("inputs" in r for r in base_resources.values())

    def ordered(keys: set[str], side: Mapping[str, Mapping[str, Any]]) -> list[str]:
        return sorted(keys, key=lambda k: (side[k]["type"], side[k]["name"], k))

    changed = []
    for k in ordered(set(base_resources) & set(head_resources), head_resources) if inputs_compared else []:
        entry = _resource_changes(base_resources[k], head_resources[k])
        if entry:
            changed.append(entry)
    added = ordered(set(head_resources) - set(base_resources), head_resources)
    removed = ordered(set(base_resources) - set(head_resources), base_resources)
    resources = {
        "added": [brief(head_resources[k]) for k in added],
        "removed": [brief(base_resources[k]) for k in removed],
        "changed": changed,
    }
    policy = _policy_diff(base, head)
    base_lines, head_lines = _cost_lines(base), _cost_lines(head)
    moved = []
    for key in sorted(set(base_lines) | set(head_lines)):
        before, after = base_lines.get(key), head_lines.get(key)
        idle = _delta(before["idle_usd_month"] if before else 0.0, after["idle_usd_month"] if after else 0.0)
        peak = _delta(before["peak_usd_month"] if before else 0.0, after["peak_usd_month"] if after else 0.0)
        descriptions = (before or {}).get("description"), (after or {}).get("description")
        if idle["delta"] or peak["delta"] or descriptions[0] != descriptions[1]:
            moved.append(
                {
                    "resource_type": key[0],
                    "resource_name": key[1],
                    "base_description": descriptions[0],
                    "head_description": descriptions[1],
                    "idle_usd_month": idle,
                    "peak_usd_month": peak,
                }
            )
    cost = {
        "idle_usd_month": _delta(_money(base, "idle_usd_month"), _money(head, "idle_usd_month")),
        "peak_usd_month": _delta(_money(base, "peak_usd_month"), _money(head, "peak_usd_month")),
        "lines": moved,
        "unpriced": {"new": sorted(set(_unpriced(head)) - set(_unpriced(base)))},
    }
    # Only when both sides are plans that record it (a base from before secret_config has none).
    base_secrets, head_secrets = _secret_config(base), _secret_config(head)
    secrets_changed = (
        sorted(k for k in set(base_secrets) | set(head_secrets) if base_secrets.get(k) != head_secrets.get(k))
        if base and head and "secret_config" in base
        else []
    )
    anything = any(resources.values()) or any(policy.values()) or moved or cost["unpriced"]["new"] or secrets_changed
    if base is None:
        status = "added"
    elif head is None:
        status = "removed"
    else:
        status = "changed" if anything else "unchanged"
    result.update(
        status=status,
        inputs_compared=inputs_compared,
        # Secret config whose committed ciphertext differs: set, rotated or removed. The offline plan
        # sees the same stand-in on both sides, so this is the only sign of it.
        secret_config_changed=secrets_changed,
        resources=resources,
        policy=policy,
        cost=cost,
        head_summary=_summary(head) if head else None,
    )
    return result


def _summary(plan: Mapping[str, Any]) -> dict[str, Any]:
    violations = plan["policy"]["violations"]
    return {
        "resources": len(plan["resources"]),
        "mandatory": sum(1 for v in violations if v["level"] == "mandatory"),
        "advisory": sum(1 for v in violations if v["level"] != "mandatory"),
        "idle_usd_month": plan["cost"]["idle_usd_month"],
        "peak_usd_month": plan["cost"]["peak_usd_month"],
    }


# -- rendering -----------------------------------------------------------------------------------

# GitHub rejects an issue comment over 65,536 characters; the Markdown keeps under this many UTF-8
# bytes (the comment workflow adds a header and cuts at 60,000 bytes as a last resort) by leaving
# out the details that do not fit.
MARKDOWN_BUDGET = 55_000


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _signed_usd(value: float) -> str:
    sign = "+" if value > 0 else "-" if value < 0 else "±"
    return f"{sign}${abs(value):,.2f}"


def _whole(value: Any) -> Any:
    """Pulumi sends every number as a double (pulumi/runtime/rpc.py); print 2.0 as 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(_whole(value), sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _change_text(change: Mapping[str, Any]) -> str:
    if change["absent_in"] == "base":
        text = f"{change['path']}: (unset) -> {_short(change['head'])}"
    elif change["absent_in"] == "head":
        text = f"{change['path']}: {_short(change['base'])} -> (unset)"
    else:
        text = f"{change['path']}: {_short(change['base'])} -> {_short(change['head'])}"
    return text + ("  [forces replacement]" if change["forces_replacement"] else "")


def _ref(base: Base) -> str:
    """The ref as the user gave it, and the commit it named (once, when the ref is that commit)."""
    short = base.commit[:12]
    return short if base.commit.startswith(base.ref) and len(base.ref) >= 7 else f"{base.ref} ({short})"


def _resource_counts(diff: Mapping[str, Any]) -> str:
    res = diff["resources"]
    replaced = sum(1 for c in res["changed"] if c["replace"])
    text = f"+{len(res['added'])} -{len(res['removed'])} ~{len(res['changed'])}"
    return text + (f" ({replaced} replaced)" if replaced else "")


def _policy_counts(diff: Mapping[str, Any]) -> str:
    policy = diff["policy"]
    mandatory = sum(1 for v in policy["new"] if v["level"] == "mandatory")
    text = f"{len(policy['new'])} new ({mandatory} mandatory), {len(policy['cleared'])} cleared"
    return text + (f", {len(policy['changed'])} reworded" if policy["changed"] else "")


_NOT_COMPARED = "inputs not compared: the base's plan carries none"


def summary_line(diff: Mapping[str, Any]) -> str:
    """One line per stack: what changed, or why nothing could be compared."""
    stack, status = diff["stack"], diff["status"]
    if status == "error":
        parts = []
        if diff["base_error"]:
            parts.append(f"the base does not plan ({diff['base_error']})")
        if diff["head_error"]:
            parts.append(f"this change does not plan ({diff['head_error']})")
        head = diff.get("head_summary")
        if head and not diff["head_error"]:
            parts.append(
                f"head plans {head['resources']} resources, {head['mandatory']} mandatory finding(s), "
                f"idle {_usd(head['idle_usd_month'])}, peak {_usd(head['peak_usd_month'])}"
            )
        return f"{stack}: not compared: " + "; ".join(parts)
    caveat = "" if diff["inputs_compared"] else f" ({_NOT_COMPARED})"
    if status == "unchanged":
        return f"{stack}: no change" + (" to resources, policy or cost" + caveat if caveat else "")
    prefix = {"added": "new stack, ", "removed": "stack removed, "}.get(status, "")
    idle, peak = diff["cost"]["idle_usd_month"], diff["cost"]["peak_usd_month"]
    if diff["secret_config_changed"]:
        prefix += f"secret config changed ({', '.join(diff['secret_config_changed'])}), "
    return (
        f"{stack}: {prefix}resources {_resource_counts(diff)}; policy {_policy_counts(diff)}; "
        f"idle {_signed_usd(idle['delta'])} ({_usd(idle['base'])} -> {_usd(idle['head'])}), "
        f"peak {_signed_usd(peak['delta'])} ({_usd(peak['base'])} -> {_usd(peak['head'])})" + caveat
    )


def _headline(base: Base, diffs: Sequence[Mapping[str, Any]]) -> str | None:
    """The one line for a change that touches no stack input, or None."""
    if not diffs or any(d["status"] != "unchanged" for d in diffs):
        return None
    names = ", ".join(d["stack"] for d in diffs)
    compared = (
        "resources, inputs, policy findings and cost"
        if all(d["inputs_compared"] for d in diffs)
        else f"resources, policy findings and cost ({_NOT_COMPARED})"
    )
    return f"No stack changes against {_ref(base)}: {names} plan the same {compared}."


def _detail_lines(diff: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    res = diff["resources"]
    for r in res["added"]:
        out.append(f"  + {r['type']}  {r['name']}")
    for r in res["removed"]:
        out.append(f"  - {r['type']}  {r['name']}")
    for r in res["changed"]:
        out.append(f"  ~ {r['type']}  {r['name']}" + ("  (replace)" if r["replace"] else ""))
        out.extend(f"      {_change_text(c)}" for c in r["changes"])
    for v in diff["policy"]["new"]:
        out.append(f"  new finding [{v['level']}] {v['rule']} {v['resource_name']}: {v['message']}")
    for v in diff["policy"]["cleared"]:
        out.append(f"  cleared [{v['level']}] {v['rule']} {v['resource_name']}: {v['message']}")
    for v in diff["policy"]["changed"]:
        out.append(
            f"  reworded [{v['level']}] {v['rule']} {v['resource_name']}: "
            f"{'; '.join(v['base_messages'])} -> {'; '.join(v['head_messages'])}"
        )
    for line in diff["cost"]["lines"]:
        idle, peak = line["idle_usd_month"], line["peak_usd_month"]
        what = line["head_description"] or line["base_description"]
        out.append(
            f"  cost {line['resource_name']} ({what}): idle {_signed_usd(idle['delta'])}, "
            f"peak {_signed_usd(peak['delta'])}"
        )
    for item in diff["cost"]["unpriced"]["new"]:
        out.append(f"  UNPRICED {item}")
    for key in diff["secret_config_changed"]:
        out.append(f"  secret config {key}: its ciphertext changed (set, rotated or removed)")
    return out


def render_text(base: Base, diffs: Sequence[Mapping[str, Any]]) -> str:
    headline = _headline(base, diffs)
    if headline:
        return headline + "\n"
    out = [f"Plan diff against {_ref(base)}", ""]
    out += [summary_line(d) for d in diffs]
    for diff in diffs:
        if diff["status"] in ("changed", "added", "removed"):
            out += ["", f"Stack {diff['stack']}", *_detail_lines(diff)]
    return "\n".join(out) + "\n"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~])")


def _md(text: str) -> str:
    """Text from config or the program, inert in a GitHub table cell: no markup, no HTML, no pipes."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;"))
    return escaped.replace("\r", " ").replace("\n", " ")


def _code(text: str) -> str:
    """A code span for a type or name; they never hold a backtick, but make sure of it."""
    return f"`{text}`" if "`" not in text and "|" not in text else _md(text)


def _markdown_details(diff: Mapping[str, Any]) -> list[str]:
    # Inside raw HTML, Markdown escapes would print literally: escape as HTML instead.
    out = ["", f"<details><summary><b>{html.escape(diff['stack'])}</b>: {_resource_counts(diff)}</summary>", ""]
    res = diff["resources"]
    rows = [("+", r["type"], r["name"], "") for r in res["added"]]
    rows += [("-", r["type"], r["name"], "") for r in res["removed"]]
    rows += [
        (
            "~" + (" (replace)" if r["replace"] else ""),
            r["type"],
            r["name"],
            "<br>".join(_md(_change_text(c)) for c in r["changes"]),
        )
        for r in res["changed"]
    ]
    if rows:
        out += ["| | type | name | inputs |", "|---|---|---|---|"]
        out += [f"| {a} | {_code(t)} | {_code(n)} | {c} |" for a, t, n, c in rows]
        out.append("")
    policy = diff["policy"]
    findings = [("new", v, v["message"]) for v in policy["new"]]
    findings += [("cleared", v, v["message"]) for v in policy["cleared"]]
    findings += [
        ("reworded", v, "; ".join(v["base_messages"]) + " → " + "; ".join(v["head_messages"]))
        for v in policy["changed"]
    ]
    if findings:
        out += ["| finding | level | rule | resource | message |", "|---|---|---|---|---|"]
        out += [
            f"| {kind} | {v['level']} | {v['rule']} | {_code(v['resource_name'])} | {_md(message)} |"
            for kind, v, message in findings
        ]
        out.append("")
    if diff["cost"]["lines"]:
        out += ["| resource | what | idle $/month | peak $/month |", "|---|---|---:|---:|"]
        for line in diff["cost"]["lines"]:
            idle, peak = line["idle_usd_month"], line["peak_usd_month"]
            what = _md(line["head_description"] or line["base_description"] or "")
            out.append(
                f"| {_code(line['resource_name'])} | {what} | {_usd(idle['base'])} → {_usd(idle['head'])} "
                f"| {_usd(peak['base'])} → {_usd(peak['head'])} |"
            )
        out.append("")
    for item in diff["cost"]["unpriced"]["new"]:
        out.append(f"UNPRICED: {_md(item)}")
    for key in diff["secret_config_changed"]:
        out.append(f"Secret config `{key}`: its ciphertext changed (set, rotated or removed).")
    out.append("</details>")
    return out


def render_markdown(base: Base, diffs: Sequence[Mapping[str, Any]], budget: int = MARKDOWN_BUDGET) -> str:
    """The pull-request comment: a summary row per stack, then each changed stack's details folded.

    Details that would take the text past `budget` UTF-8 bytes are replaced by a line saying so.
    """
    out = [f"### Offline plan: this change against {_md(_ref(base))}", ""]
    headline = _headline(base, diffs)
    if headline:
        return "\n".join([*out, _md(headline)]) + "\n"
    out += ["| stack | resources (+ - ~) | policy | idle $/month | peak $/month |", "|---|---|---|---:|---:|"]
    for diff in diffs:
        if diff["status"] in ("unchanged", "error"):
            out.append(f"| {_md(diff['stack'])} | {_md(summary_line(diff).split(': ', 1)[1])} | | | |")
            continue
        idle, peak = diff["cost"]["idle_usd_month"], diff["cost"]["peak_usd_month"]
        counts = _resource_counts(diff) + ("" if diff["inputs_compared"] else f" ({_NOT_COMPARED})")
        out.append(
            f"| {_md(diff['stack'])} | {counts} | {_policy_counts(diff)} "
            f"| {_usd(idle['head'])} ({_signed_usd(idle['delta'])}) | {_usd(peak['head'])} "
            f"({_signed_usd(peak['delta'])}) |"
        )
    size = sum(len(line.encode()) + 1 for line in out)
    for diff in diffs:
        if diff["status"] not in ("changed", "added", "removed"):
            continue
        details = _markdown_details(diff)
        length = sum(len(line.encode()) + 1 for line in details)
        if size + length > budget:
            details = [
                "",
                f"_{_md(diff['stack'])}: details left out to keep this comment under GitHub's size limit; "
                "`cdao plan --diff` prints them all, and the job summary has the head's plan._",
            ]
            length = sum(len(line.encode()) + 1 for line in details)
        out += details
        size += length
    return "\n".join(out) + "\n"


def render_json(base: Base, diffs: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps({"base": {"ref": base.ref, "commit": base.commit}, "stacks": list(diffs)}, indent=2) + "\n"
