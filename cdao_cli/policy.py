"""`cdao policy check FILE.json --stack <s> [--format text|json] [--config FILE] [--environments DIR]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cdao_stacks
from cdao_cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_environments_argument
from cdao_cli.files import NotUtf8Error, read_utf8
from cdao_resources import UNKNOWN_TOKEN

DESCRIPTION = (
    "Evaluate the CDAO policy pack on a JSON list of resources [{type, name, props}] of one stack "
    f"(cdao_resources). Values unknown at preview are written as the string {UNKNOWN_TOKEN!r}."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="JSON file: a list of {type, name, props[, urn, id, propertyDependencies]}")
    p.add_argument(
        "--stack", required=True, help="stack whose policy profile applies (its cdao-stack:profile in environments/)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--config", help="JSON file overriding per-profile settings and enforcement levels")
    add_environments_argument(p)


def _load_json(path: str, what: str) -> Any:
    from policies import ConfigError  # noqa: PLC0415 - the pack loads when the command runs, not for --help

    try:
        text = read_utf8(Path(path), f"{what} {path}")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except NotUtf8Error as exc:
        raise ConfigError(str(exc)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def run(args: argparse.Namespace) -> int:
    """`cdao policy check`: EXIT_FAILED on a mandatory violation, EXIT_USAGE on unreadable input."""
    from policies import ConfigError, evaluate  # noqa: PLC0415 - the pack loads when the command runs

    try:
        resources = _load_json(args.file, "resource file")
        if not isinstance(resources, list):
            raise ConfigError(f"resource file {args.file} must hold a JSON list, got {type(resources).__name__}")
        config = _load_json(args.config, "config file") if args.config else None
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"config file {args.config} must hold a JSON object")
        profile = cdao_stacks.load(args.environments).get(args.stack).profile
        violations = evaluate(resources, args.stack, config, profile=profile)
    except (ConfigError, cdao_stacks.StackRegistryError) as exc:
        print(f"cdao policy check: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if args.format == "json":
        print(json.dumps([v.to_dict() for v in violations], indent=2))
    else:
        for v in violations:
            print(f"[{v.level}] {v.rule} {v.resource_type} {v.resource_name}: {v.message}")
        mandatory = sum(v.level == "mandatory" for v in violations)
        print(
            f"{len(violations)} violation(s) in stack {args.stack!r}: {mandatory} mandatory, "
            f"{len(violations) - mandatory} advisory"
        )
    return EXIT_FAILED if any(v.level == "mandatory" for v in violations) else EXIT_OK
