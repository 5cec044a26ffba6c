"""Does a model hold up when the input is louder or quieter than its dev set? Quality against input level.

The dev sets (and most training mixtures) sit at -35..-15 dBFS; real files arrive anywhere from a quiet
laptop microphone to a peak-normalized broadcast (studio prompts such as Asterisk's have their active speech
at about -17 dBFS RMS). This scales every clip of an out-of-domain dev set by each ``--gains`` (dB, or
``peak``: each clip scaled so that its peak sits at 0.99 of full scale, the loudest a file holds without
clipping; the reference scales with it) and scores the model's offline output against the scaled reference,
as the evaluation does (output aligned by the model's latency):

- ``codec`` (3 kbps), ``codec-ood``: PESQ-WB and STOI;
- ``enhance``, ``enhance-ood``: SI-SDR, PESQ-WB and STOI;
- ``separate``, ``separate-ood``: SI-SDR improvement of the better talker order;
- ``kws`` and ``kws-spiking``, the recorded keywords of ``keywords-real`` (its first clips: the quiet
  condition first): top-1 by the argmax of the posteriors and by the highest-scoring event, as the
  evaluation scores them (the end silence a stream gets, then the model's own detector).

Samples are not clipped: above about +10 dB some go past full scale (the share is printed), as a float
pipeline can carry them but a 16-bit file cannot. One thread; about a minute per model and gain at 20 clips.
``--weights MODEL=FILE`` scores other weights (a run's checkpoint) in place of the shipped ones.

    python benchmarks/input_level.py [--model codec,enhance,separate,kws,kws-spiking] [--clips 20] \
        [--gains -15,-5,0,5,10,peak]
"""

from __future__ import annotations

import argparse

import numpy as np
import soundfile as sf
import torch

from wavestream.data.devset import load_devset
from wavestream.evaluate.harness import machine_load
from wavestream.evaluate.kws import argmax_keyword, detect, posteriors, top_event
from wavestream.evaluate.metrics import pesq_wb, pit_order, si_sdr, stoi
from wavestream.models.registry import load_model

#: model -> (dev set, the manifest's input field, its reference fields)
SETS = {"codec": ("codec-ood", "clean", ("clean",)), "enhance": ("enhance-ood", "noisy", ("clean",)),
        "separate": ("separate-ood", "mixture", ("s1", "s2")),
        "kws": ("keywords-real", "audio", ()), "kws-spiking": ("keywords-real", "audio", ())}


def keyword_scores(model, audio: np.ndarray, label: str) -> dict[str, float]:
    post = posteriors(model, audio)
    best, _ = argmax_keyword(post, len(model.classes) - 2, model.detector_config["smooth_frames"])
    return {"top1_argmax": float(model.classes[best] == label),
            "top1_event": float((top_event(detect(model, post)) or {}).get("label") == label)}


def scores(name: str, model, audio: np.ndarray, references: list) -> dict[str, float]:
    """The model's scores on one scaled clip: ``references`` are the scaled reference signals, or for a
    spotter the clip's label."""
    if name.startswith("kws"):
        return keyword_scores(model, audio, references[0])
    n = len(audio) // model.hop * model.hop
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(audio[:n]))[None, None])[0].double().numpy()
    out = out[:, model.latency:]  # output sample t + latency answers input sample t
    refs = [r[:out.shape[1]] for r in references]
    if name == "separate":
        mix = audio[:out.shape[1]].astype(np.float64)
        order = pit_order(np.stack(refs), out)
        return {"si_sdri": float(np.mean([si_sdr(r, out[i]) - si_sdr(r, mix)
                                          for r, i in zip(refs, order, strict=True)]))}
    ref, est = refs[0], out[0]
    figures = {"pesq": pesq_wb(ref, est), "stoi": stoi(ref, est)}
    if name == "enhance":
        figures["si_sdr"] = si_sdr(ref, est)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=",".join(SETS), help="comma-separated, of " + ", ".join(SETS))
    parser.add_argument("--clips", type=int, default=20, help="first clips of each dev set (default 20)")
    parser.add_argument("--gains", default="-15,-5,0,5,10,peak",
                        help="dB added to every clip, or peak (to 0.99 of full scale); default -15,-5,0,5,10,peak")
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=FILE",
                        help="other weights for a model (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    weights = dict(w.split("=", 1) for w in args.weights)
    gains = args.gains.split(",")
    print(f"torch {torch.__version__}, 1 thread; {machine_load()}\n")
    print("| model | dev set | gain dB | input level dBFS (mean) | samples past full scale | scores (means) |")
    print("|---|---|---|---|---|---|")
    for name in args.model.split(","):
        task, source, reference_keys = SETS[name]
        model = load_model(name, weights=weights.get(name))
        folder, entries = load_devset(task, verify=False)
        if name.startswith("kws"):  # the keyword clips; the label is what they are scored against
            entries = [e for e in entries if e["label"] in model.classes[:-2]]
        clips = []
        for e in entries[:args.clips]:
            audio = sf.read(str(folder / e[source]), dtype="float64")[0]  # the codec's reference is its input
            refs = [audio if k == source else sf.read(str(folder / e[k]), dtype="float64")[0] for k in reference_keys]
            clips.append((audio, refs, e.get("label")))
        for gain in gains:
            rows, levels, past = [], [], []
            for audio, refs, label in clips:
                k = 0.99 / np.abs(audio).max() if gain == "peak" else 10 ** (float(gain) / 20)
                scaled = (audio * k).astype(np.float32)
                rows.append(scores(name, model, scaled, [label] if label else [r * k for r in refs]))
                levels.append(10 * np.log10(np.mean(np.square(audio * k)) + 1e-20))
                past.append(np.mean(np.abs(scaled) > 1))
            level, past = np.mean(levels), np.mean(past)
            figures = ", ".join(f"{k} {np.nanmean([r[k] for r in rows]):.3f}" for k in rows[0])
            shown = gain if gain == "peak" else f"{float(gain):+g}"
            print(f"| {name} | {task} ({len(clips)} clips) | {shown} | {level:.1f} | {past:.4f} | {figures} |",
                  flush=True)
    print(f"\nmachine: {machine_load()}")


if __name__ == "__main__":
    main()
