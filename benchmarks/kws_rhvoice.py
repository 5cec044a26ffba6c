"""Would RHVoice's English voices teach the keyword spotters anything new? Their top-1 on those voices now.

RHVoice (Debian non-free: ``apt-get install rhvoice rhvoice-english``) speaks English with six voices:
statistical parametric models of four CMU ARCTIC talkers (alan, bdl, clb, slt) and two Russian-accented
English voices (evgeniy-eng, lyubov). Each voice says each of the 20 keywords once at its default rate and
pitch; the clip (24 kHz, resampled to 16 kHz, 0.25 s of silence before it) goes through each shipped
model, and the keyword whose smoothed posterior peaks highest is its answer (``argmax_keyword``, as
``wavestream eval kws`` scores top-1). A voice the models already name is a voice they have little to
learn from. Nothing is asserted.

    OMP_NUM_THREADS=1 python benchmarks/kws_rhvoice.py [--models kws,kws-spiking]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf
import torch

from wavestream.data.audio import resample
from wavestream.data.corpora import KEYWORDS
from wavestream.evaluate.kws import argmax_keyword, posteriors
from wavestream.models.registry import load_model

VOICES = ("alan", "bdl", "clb", "slt", "evgeniy-eng", "lyubov")
RATE = 16000


def say(voice: str, word: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["RHVoice-test", "-p", voice, "-o", f.name], input=word.encode(), check=True)
        audio, rate = sf.read(f.name, dtype="float32")
    lead = np.zeros(RATE // 4, np.float32)
    return np.concatenate([lead, resample(audio, rate, RATE).astype(np.float32)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="kws,kws-spiking")
    args = parser.parse_args()
    if shutil.which("RHVoice-test") is None:
        raise SystemExit("RHVoice-test not found: apt-get install rhvoice rhvoice-english (Debian non-free)")
    torch.set_num_threads(1)
    models = {name: load_model(name) for name in args.models.split(",")}
    totals = dict.fromkeys(models, 0)
    print("| voice | " + " | ".join(f"{name} top-1" for name in models) + " |")
    print("|---|" + "---|" * len(models))
    for voice in VOICES:
        clips = [say(voice, word) for word in KEYWORDS]
        row = []
        for name, model in models.items():
            smooth = model.detector_config["smooth_frames"]
            hits = sum(model.classes[argmax_keyword(posteriors(model, clip), len(KEYWORDS), smooth)[0]] == word
                       for clip, word in zip(clips, KEYWORDS, strict=True))
            totals[name] += hits
            row.append(f"{hits}/{len(KEYWORDS)}")
        print(f"| {voice} | " + " | ".join(row) + " |")
    print("| all | " + " | ".join(f"{hits}/{len(KEYWORDS) * len(VOICES)}" for hits in totals.values()) + " |")


if __name__ == "__main__":
    main()
