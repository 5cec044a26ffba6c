"""Does a model hold up when the input is louder or quieter than its dev set? Quality against input level.

The dev sets (and most training mixtures) sit at -35..-15 dBFS; real files arrive anywhere from a quiet
laptop microphone to a peak-normalized broadcast. This scales every clip of an out-of-domain dev set by each
``--gains`` (dB; the reference scales with it) and scores the shipped model's offline output against the
scaled reference, as the evaluation does (output aligned by the model's latency):

- ``codec`` (3 kbps), ``codec-ood``: PESQ-WB and STOI;
- ``enhance``, ``enhance-ood``: SI-SDR, PESQ-WB and STOI;
- ``separate``, ``separate-ood``: SI-SDR improvement of the better talker order.

Samples are not clipped: above about +10 dB some go past full scale (the share is printed), as a float
pipeline can carry them but a 16-bit file cannot. One thread; about a minute per model and gain at 20 clips.

    python benchmarks/input_level.py --model codec,enhance,separate [--clips 20] [--gains -15,-5,0,10,20]
"""

from __future__ import annotations

import argparse

import numpy as np
import soundfile as sf
import torch

from wavestream.data.devset import load_devset
from wavestream.evaluate.harness import machine_load
from wavestream.evaluate.metrics import pesq_wb, si_sdr, stoi
from wavestream.models.registry import load_model

#: model -> (dev set, the manifest's input field, its reference fields)
SETS = {"codec": ("codec-ood", "clean", ("clean",)), "enhance": ("enhance-ood", "noisy", ("clean",)),
        "separate": ("separate-ood", "mixture", ("s1", "s2"))}


def scores(name: str, model, audio: np.ndarray, references: list[np.ndarray]) -> dict[str, float]:
    n = len(audio) // model.hop * model.hop
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(audio[:n]))[None, None])[0].double().numpy()
    out = out[:, model.latency:]  # output sample t + latency answers input sample t
    refs = [r[:out.shape[1]] for r in references]
    if name == "separate":
        mix = audio[:out.shape[1]].astype(np.float64)
        straight = np.mean([si_sdr(r, o) for r, o in zip(refs, out, strict=True)])
        swapped = np.mean([si_sdr(r, o) for r, o in zip(refs, out[::-1], strict=True)])
        return {"si_sdri": max(straight, swapped) - np.mean([si_sdr(r, mix) for r in refs])}
    ref, est = refs[0], out[0]
    figures = {"pesq": pesq_wb(ref, est), "stoi": stoi(ref, est)}
    if name == "enhance":
        figures["si_sdr"] = si_sdr(ref, est)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="codec,enhance,separate", help="comma-separated, of " + ", ".join(SETS))
    parser.add_argument("--clips", type=int, default=20, help="first clips of each dev set (default 20)")
    parser.add_argument("--gains", default="-15,-5,0,10,20", help="dB added to every clip (default -15,-5,0,10,20)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gains = [float(g) for g in args.gains.split(",")]
    print(f"torch {torch.__version__}, 1 thread; {machine_load()}\n")
    print("| model | dev set | gain dB | input level dBFS (mean) | samples past full scale | scores (means) |")
    print("|---|---|---|---|---|---|")
    for name in args.model.split(","):
        task, source, reference_keys = SETS[name]
        model = load_model(name)
        folder, entries = load_devset(task, verify=False)
        clips = [(sf.read(str(folder / e[source]), dtype="float32")[0],
                  [sf.read(str(folder / e[k]), dtype="float64")[0] for k in reference_keys])
                 for e in entries[:args.clips]]
        for gain in gains:
            scale = 10 ** (gain / 20)
            rows = [scores(name, model, audio * np.float32(scale), [r * scale for r in refs]) for audio, refs in clips]
            level = np.mean([10 * np.log10(np.mean(np.square(a * scale, dtype=np.float64)) + 1e-20) for a, _ in clips])
            past = np.mean([np.mean(np.abs(a * scale) > 1) for a, _ in clips])
            figures = ", ".join(f"{k} {np.nanmean([r[k] for r in rows]):.3f}" for k in rows[0])
            print(f"| {name} | {task} ({len(clips)} clips) | {gain:+g} | {level:.1f} | {past:.4f} | {figures} |",
                  flush=True)
    print(f"\nmachine: {machine_load()}")


if __name__ == "__main__":
    main()
