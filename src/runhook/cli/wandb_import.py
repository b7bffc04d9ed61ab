"""`runhook import wandb FILE... [--map FILE] [--live ENTITY]`: W&B automations as TOML on
stdout; what could not be translated on stderr, each with its reason, and exit status 1."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from runhook.config.from_wandb import shapes
from runhook.config.from_wandb.toml_text import render
from runhook.config.from_wandb.translate import translate
from runhook.core.words import count


def _mapping(path: str | None) -> dict[str, Any]:
    """The --map file: TOML, or JSON."""
    if path is None:
        return {}
    text = Path(path).read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise TypeError("expected a table (TOML) or an object (JSON)") from None
        return loaded


def _live(entity: str) -> list[Any]:
    """Saved automations from W&B's API (`wandb` installed, WANDB_API_KEY set)."""
    if not os.environ.get("WANDB_API_KEY"):
        raise ValueError("--live needs WANDB_API_KEY")
    wandb: Any = importlib.import_module("wandb")
    return [a.model_dump(by_alias=True, mode="json") for a in wandb.Api().automations(entity)]


def cmd_import_wandb(args: argparse.Namespace) -> int:
    try:
        mapping = _mapping(args.map)
    except (OSError, ValueError, TypeError) as exc:
        print(f"runhook: --map {args.map}: {exc}", file=sys.stderr)
        return 2
    definitions: list[shapes.Definition] = []
    left_out: list[tuple[str, str]] = []
    sources: list[tuple[str, list[Any]]] = []
    try:
        sources += [(f, list(shapes.records(Path(f).read_text(encoding="utf-8"))))
                    for f in args.files]
        if args.live:
            sources.append((f"W&B entity {args.live}", _live(args.live)))
    except (OSError, ValueError, ImportError) as exc:
        print(f"runhook: {exc}", file=sys.stderr)
        return 2
    for source, records in sources:
        for number, record in enumerate(records, 1):
            try:
                definitions.append(shapes.read(record))
            except (shapes.ShapeError, ValueError) as exc:
                left_out.append((f"{source} #{number}", str(exc)))
    imported = translate(definitions, mapping)
    left_out += imported.left_out
    header = [(f"Imported from W&B by `runhook import wandb`: "
               f"{count(len(imported.automations), 'automation')}, {len(left_out)} left out "
               "(listed on stderr).")]
    sys.stdout.write(render(imported, header))
    for name, reason in left_out:
        print(f"runhook import: left out {name}: {reason}", file=sys.stderr)
    return 1 if left_out else 0


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="turn another tool's automations into runhook TOML")
    tools = p.add_subparsers(dest="tool", required=True)
    w = tools.add_parser("wandb", help="W&B automations (JSON or NDJSON dumps) as TOML on "
                                       "stdout; exit 1 if any was left out")
    w.add_argument("files", nargs="*", metavar="FILE")
    w.add_argument("--map", help="TOML or JSON: entity, [scopes] ids, [integrations.\"ID\"] "
                                 "name/url/secrets, [secrets]")
    w.add_argument("--live", metavar="ENTITY", help="read the entity's automations from W&B "
                                                    "(needs wandb and WANDB_API_KEY)")
    w.set_defaults(func=cmd_import_wandb)
