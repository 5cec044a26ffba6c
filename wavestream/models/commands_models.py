"""`wavestream models`: the registered models, as a table or as JSON (``--json``).

Listed from the catalog (``wavestream.models.catalog``), so this loads no torch and builds no model.
"""

from __future__ import annotations

import argparse
import json

from wavestream.models.catalog import list_models

COLUMNS = [  # header, how to show a description
    ("name", lambda d: d["name"]),
    ("task", lambda d: d["task"]),
    ("rate", lambda d: f"{d['sample_rate']}" if d["sample_rate"] else "-"),
    ("hop ms", lambda d: f"{1000 * d['hop'] / d['sample_rate']:g}" if d["sample_rate"] else "-"),
    ("latency ms", lambda d: f"{d['latency_ms']:g}" if d["latency_ms"] is not None else "-"),
    ("in -> out", lambda d: f"{d['input']} -> {d['output']}"),
    ("params", lambda d: f"{d['parameters']:,}"),
    ("trained", lambda d: "yes" if d["trained"] else "no"),
    ("description", lambda d: d["description"]),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the descriptions as JSON")


def table(descriptions: list[dict]) -> str:
    rows = [[header for header, _ in COLUMNS]] + [[show(d) for _, show in COLUMNS] for d in descriptions]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def run(args: argparse.Namespace) -> int:
    descriptions = list_models()
    if args.json:
        print(json.dumps(descriptions, indent=2))
    elif descriptions:
        print(table(descriptions))
    else:
        print("no models registered")
    return 0
