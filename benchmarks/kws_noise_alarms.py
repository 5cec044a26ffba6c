"""Which noise and music clips of ``keywords-negative`` make a keyword spotter fire, and with which keyword
(issue 10: the evaluation gives only the rate per hour). One line per weights file:

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/kws_noise_alarms.py [WEIGHTS.safetensors ...]

Without arguments, the shipped ``kws`` weights. Each clip runs through the weights' own detector, as
``wavestream eval kws`` runs it.
"""

from __future__ import annotations

import sys

import soundfile as sf
import torch

from wavestream.data.devset import load_devset
from wavestream.evaluate.kws import TASK_SETS, detect, posteriors
from wavestream.models.registry import load_model


def main() -> None:
    torch.set_num_threads(1)
    folder, entries = load_devset(TASK_SETS["negative"], None)
    noise = [e for e in entries if e.get("kind") != "speech"]
    for weights in sys.argv[1:] or [None]:
        model = load_model("kws", weights=weights).eval()
        alarms = {}
        for entry in noise:
            audio = sf.read(str(folder / entry["audio"]), dtype="float32")[0]
            events = detect(model, posteriors(model, audio))
            if events:
                alarms[entry["audio"]] = [event["label"] for event in events]
        print(f"{weights or 'shipped kws'}: {len(noise)} noise/music clips, {sum(map(len, alarms.values()))} "
              f"alarms {alarms}", flush=True)


if __name__ == "__main__":
    main()
