"""Does the new-talker augmentation (``wavestream.data.voice.shift_voice``) still sound like speech, and what
does it cost?

Recognition: the shipped ``kws`` model's argmax top-1 on the same clean TTS keyword clips (dev voices by
default: talkers it never trained on; 50 dB SNR, no room, no speed change, no band-limit, fixed level),
un-augmented and augmented. The words, their placement and the background are the same for every
condition (the word is drawn first, shifted, then placed with the same seeded draws), so the gap is the
augmentation alone. If the shifted clips were garbled, top-1 would fall far below the un-augmented one.

Cost: CPU ms (process time: other load on the machine does not count) of one thread per 1 s clip for
``shift_voice`` alone, and per ``KeywordClips`` item (1.5 s) of kws-ft.json (off) and kws-voices.json (on).
Nothing is asserted.

    OMP_NUM_THREADS=1 python benchmarks/kws_voices.py [--clips 200] [--split dev] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from wavestream.data.audio import resample
from wavestream.data.keywords import KeywordClips
from wavestream.data.voice import shift_voice
from wavestream.evaluate.kws import argmax_keyword
from wavestream.models.registry import load_model

CONFIGS = "wavestream/train/configs"
RATE = 16000

CONDITIONS = {  # name: (semitones or a range, formant factor or a range)
    "none": (0.0, 1.0),
    "pitch -4": (-4.0, 1.0), "pitch +4": (4.0, 1.0),
    "formant 0.88": (0.0, 0.88), "formant 1.12": (0.0, 1.12),
    "pitch U(-4,4)": ((-4.0, 4.0), 1.0), "formant U(.88,1.12)": (0.0, (0.88, 1.12)),
    "both U": ((-4.0, 4.0), (0.88, 1.12)),
    "both extreme (+4, 0.88)": (4.0, 0.88), "both extreme (-4, 1.12)": (-4.0, 1.12),
}
#: for scale: the tape-speed resampling the shipped model was trained with (pitch, formants, tempo together)
SPEEDS = {"tape speed 0.85": 0.85, "tape speed 1.15": 1.15}


def _draw(rng: np.random.Generator, value) -> float:
    return float(rng.uniform(*value)) if isinstance(value, tuple) else float(value)


def recognition(clips: int, split: str, seed: int) -> dict:
    model = load_model("kws")
    model.eval()
    keywords = len(model.classes) - 2
    data = KeywordClips(None, split, seconds=1.5, snr_db=(50.0, 50.0), quiet_prob=0.0, reverb_prob=0.0,
                        speed_prob=0.0, bandlimit_prob=0.0, context_prob=0.0, level_db=(-25.0, -25.0))
    assert data.keywords == tuple(model.classes[:keywords])
    pick = np.random.default_rng(seed)
    words = []
    for i in range(clips):
        label = i % keywords
        takes = data.by_word[data.keywords[label]]
        entry = takes[pick.integers(len(takes))]
        words.append((label, entry, data.read(entry)))
    n = int(1.5 * RATE) // model.hop * model.hop
    out = {}
    for name in [*CONDITIONS, *SPEEDS]:
        draw = np.random.default_rng(seed + 1)
        audio, labels = [], []
        for i, (label, entry, word) in enumerate(words):
            if name in SPEEDS:
                shifted = resample(word, int(round(RATE * SPEEDS[name])), RATE)
            else:
                pitch, formant = CONDITIONS[name]
                shifted = shift_voice(word, RATE, _draw(draw, pitch), _draw(draw, formant))
            x, _, _ = data.synthesize(np.random.default_rng([seed, i]), label=label,
                                      word=(shifted, {"speaker": entry["speaker"]}))
            audio.append(x[:n])
            labels.append(label)
        batch = torch.from_numpy(np.stack(audio))[:, None]
        with torch.no_grad():
            post = torch.cat([model(batch[i:i + 50]) for i in range(0, len(batch), 50)]).numpy()
        right = [argmax_keyword(p.T, keywords, model.detector_config["smooth_frames"])[0] == y
                 for p, y in zip(post, labels, strict=True)]
        out[name] = round(float(np.mean(right)), 3)
        print(f"{name:28s} top-1 {out[name]:.3f}", flush=True)
    return out


def cost(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    data = KeywordClips(None, "train", seconds=1.0, speed_prob=0.0)
    takes = [e for es in data.by_word.values() for e in es]
    words = [data.read(takes[rng.integers(len(takes))]) for _ in range(40)]
    clips = [np.pad(w, (0, max(0, RATE - len(w))))[:RATE] for w in words]
    out = {}
    for name, (pitch, formant) in (("pitch", ((-4.0, 4.0), 1.0)), ("formant", (0.0, (0.88, 1.12))),
                                   ("both", ((-4.0, 4.0), (0.88, 1.12)))):
        t0 = time.process_time()
        for _ in range(3):
            for c in clips:
                shift_voice(c, RATE, _draw(rng, pitch), _draw(rng, formant))
        out[f"shift_voice {name} ms per 1 s clip"] = round((time.process_time() - t0) / (3 * len(clips)) * 1000, 2)
    for config in ("kws-ft", "kws-voices"):
        options = json.load(open(f"{CONFIGS}/{config}.json"))["data"]
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()
                   if k not in ("batch_size", "num_workers", "seed")}
        items = KeywordClips(None, "train", length=200, seed=seed, **options)
        items[0]
        t0 = time.process_time()
        for i in range(200):
            items[i]
        out[f"KeywordClips item ms ({config}, 1.5 s)"] = round((time.process_time() - t0) / 200 * 1000, 2)
    for k, v in out.items():
        print(f"{k:45s} {v}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"recognition_top1": recognition(args.clips, args.split, args.seed)}
    if not args.skip_cost:
        result["cost"] = cost(args.seed)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
