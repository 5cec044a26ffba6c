"""`wavestream` command line: one dispatcher; each command lives beside the code it drives.

Every command module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Only the module of
the command given is imported (for its arguments, then to run it), so that `wavestream models` does
not pay for FastAPI, the server or the training stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "serve": ("wavestream.service.commands_serve", "run the HTTP/WebSocket server"),
    "stream": ("wavestream.client.commands_stream", "stream a file to a server and save the output"),
    "process": ("wavestream.engine.commands_process", "process an audio file offline with a model"),
    "encode": ("wavestream.engine.commands_encode", "encode an audio file into a codec token file (.wsc)"),
    "decode": ("wavestream.engine.commands_decode", "decode a codec token file (.wsc) into audio"),
    "models": ("wavestream.models.commands_models", "list the available models"),
    "data": ("wavestream.data.commands", "prepare corpora, manifests and frozen dev sets"),
    "train": ("wavestream.train.commands", "train a model family with its recipe"),
    "eval": ("wavestream.evaluate.commands", "evaluate a model and its peers on a dev set"),
    "bench": ("wavestream.evaluate.commands_bench", "run a speed benchmark"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of ``command`` only (every command is listed)."""
    parser = argparse.ArgumentParser(prog="wavestream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_path, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module_path)
        if name != command:
            continue
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("wavestream"):
                p.set_defaults(_missing=f"`{name}` is not available in this build ({exc.name} missing)")
                continue
            raise
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)  # no options come before it
    args = build_parser(command).parse_args(argv)
    if getattr(args, "_missing", None):
        print(args._missing, file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
