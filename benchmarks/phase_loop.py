"""The codec's phase vocoder loop, this checkout's against a git revision's, side by side, one thread.

The shipped ``codec`` decodes log magnitudes and takes each frame's phase from ``PhaseVocoder``, a loop
over synthesis frames (100 a second) of ~25 elementwise ops on a few hundred bins: per-call cost, not
arithmetic. This times the codec's offline round trip (the evaluation's RTF) with the vocoder's
``_phase`` of this checkout and of ``--old`` (a git revision, e.g. the torch loop's b1a391a) swapped in
turn, interleaved, and checks the two give the same audio bit for bit. The machine's load is printed;
ratios measured side by side are what count on a loaded machine. Nothing is asserted.

    python benchmarks/phase_loop.py --old b1a391a [--seconds 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wavestream.evaluate.harness import machine_load
from wavestream.evaluate.peers import RegistryModel
from wavestream.streaming import phase


def old_phase(revision: str):
    """``PhaseVocoder._phase`` as it was at ``revision`` (its module loaded from ``git show``)."""
    source = subprocess.run(["git", "show", f"{revision}:wavestream/streaming/phase.py"], check=True,
                            capture_output=True, text=True).stdout
    source = source.replace("from .module", "from wavestream.streaming.module").replace(
        "from .state", "from wavestream.streaming.state")
    path = Path(tempfile.mkdtemp()) / "phase_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("phase_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["phase_old"] = module
    spec.loader.exec_module(module)
    return module.PhaseVocoder._phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="git revision of the loop to compare with")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = RegistryModel("codec")
    audio = (np.random.default_rng(0).standard_normal(int(16000 * args.seconds)) * 0.05).astype(np.float32)
    loops = {args.old: old_phase(args.old), "this checkout": phase.PhaseVocoder._phase}
    times: dict[str, list[float]] = {k: [] for k in loops}
    outputs = {}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            phase.PhaseVocoder._phase = loop
            started = time.perf_counter()
            outputs[name] = model.process(audio, 16000)
            times[name].append((time.perf_counter() - started) / args.seconds)
    phase.PhaseVocoder._phase = loops["this checkout"]
    print(f"codec round trip, {args.seconds:g} s offline, one thread, medians of {args.rounds} (RTF):")
    for name, rtfs in times.items():
        print(f"  vocoder loop of {name}: {statistics.median(rtfs):.4f}")
    print(f"same audio bit for bit: {np.array_equal(*outputs.values())}")
    print(f"machine: {machine_load()}")


if __name__ == "__main__":
    main()
