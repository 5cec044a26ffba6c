"""Do the denoising peers treat a corpus's clean speech as speech? A check for an out-of-domain dev set.

An enhancement dev set scores a system by how close its output is to the clean reference. If the
reference speech itself is something strong denoisers remove (game barks, screams, voice effects),
the set punishes good denoisers and rewards keeping everything. This runs the peers on clean clips
alone (no noise added) and prints the median SI-SDR of their output against their input: real speech
should come back nearly untouched (DeepFilterNet3 keeps 29-34 dB of read and studio speech).

Segments: ``--clips`` 5 s segments per corpus, made as the dev sets make their references (one talker's
clean clips joined by short pauses, ``CleanSpeech``), drawn from whichever split holds the corpus.
One thread; a minute or two per corpus.

    python benchmarks/ood_identity.py tuxpaint-speech hedgewars asterisk [--clips 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from wavestream.data.manifest import SPLITS, default_root
from wavestream.data.synth import CleanSpeech
from wavestream.evaluate.harness import build_system, machine_load
from wavestream.evaluate.metrics import si_sdr

SECONDS, RATE = 5.0, 16000


def segments(corpus: str, count: int, seed: int) -> list[np.ndarray]:
    for split in SPLITS:
        try:
            data = CleanSpeech(default_root(), split, seconds=SECONDS, length=count, seed=seed, speech_corpora=[corpus])
        except ValueError:  # the corpus has no clean clips in this split
            continue
        return [data[i][0].numpy() for i in range(count)]
    raise SystemExit(f"{corpus}: no clean clips in the manifests (run `wavestream data prepare --only {corpus}`)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpora", nargs="+", help="speech corpora of the prepared data")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--systems", default="deepfilternet,rnnoise,dtln,enhance",
                        help="comma-separated peers or registry models, as `wavestream eval` names them")
    args = parser.parse_args()
    torch.set_num_threads(1)
    peers = {name: build_system(name) for name in args.systems.split(",")}
    print(f"{machine_load()}; {args.clips} clean clips per corpus, "
          f"seed {args.seed}; median SI-SDR (dB) of each system's output against its clean input (5 s segments)")
    print(f"| corpus | clips | {' | '.join(peers)} |")
    print(f"|---|---:|{'---:|' * len(peers)}")
    for corpus in args.corpora:
        started = time.perf_counter()
        clips = segments(corpus, args.clips, args.seed)
        scores: dict[str, list[float]] = {name: [] for name in peers}
        for audio in clips:
            for name, peer in peers.items():
                peer.reset()
                scores[name].append(si_sdr(audio, peer.process(audio, RATE)))
        medians = " | ".join(f"{np.median(v):.1f}" for v in scores.values())
        print(f"| {corpus} | {len(clips)} | {medians} |  ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
