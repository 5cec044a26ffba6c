"""Reports from harness results: results.json, README.md (Markdown tables) and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf

from .metrics import pit_order

COLUMNS = [  # (key, header, format)
    ("si_sdr", "SI-SDR dB", "{:.2f}"), ("si_sdri", "SI-SDRi dB", "{:+.2f}"), ("sdr", "SDR dB", "{:.2f}"),
    ("sdri", "SDRi dB", "{:+.2f}"), ("pesq", "PESQ-WB", "{:.3f}"),
    ("stoi", "STOI", "{:.3f}"), ("dnsmos_sig", "DNSMOS SIG", "{:.2f}"), ("dnsmos_bak", "DNSMOS BAK", "{:.2f}"),
    ("dnsmos_ovrl", "DNSMOS OVRL", "{:.2f}"), ("visqol", "ViSQOL", "{:.2f}"),
]
#: per task: the metrics tabled by group (SNR, overlap) and those plotted against the real-time factor
GROUPED = {"separate": ("si_sdri", "sdri", "pesq", "stoi")}
PLOTTED = {"separate": ("si_sdri", "sdri", "pesq")}
GROUPED_DEFAULT, PLOTTED_DEFAULT = ("si_sdr", "pesq", "stoi"), ("pesq", "dnsmos_ovrl", "si_sdr")


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return pattern.format(value)


def _params(n) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k" if n else "0"


def markdown(results: dict, command: str) -> str:
    systems = results["systems"]
    present = [c for c in COLUMNS if any(c[0] in s["mean"] for s in systems.values())]
    lines = [f"# {results['task']} evaluation", "",
             f"Dev set `{results['devset'].get('name', results['task'])}` version {results['devset'].get('version', 1)}"
             + (f" (references: DNSMOS BAK >= {results['devset']['min_bak']}, wide-band)"
                if results['devset'].get('min_bak') else "")
             + f" at `{results['devset']['path']}` ({results['devset']['clips']} clips, manifest sha256 "
             f"`{results['devset']['checksum'][:16]}…`), {results['date']}.", "",
             f"Reproduce: `{command}`", "",
             f"Machine: {results['machine']['cpu']}"
             + (f" ({results['machine']['load']} when the run started)" if results["machine"].get("load") else "")
             + "; RTF = processing time / audio duration on one thread "
             "(lower is faster; under 1 is faster than real time).", ""]
    batched = {s["batch_chunk_ms"] for s in systems.values() if s.get("rtf_batched") is not None}
    if batched:
        lines += [f"RTF batched (our models): dev clips as the streams of one batch, stepped in "
                  f"{'/'.join(f'{c:g}' for c in sorted(batched))} ms chunks from a zero state on the same "
                  "thread, as the server steps many streams at once; compute time / audio of all streams "
                  "(the batch size in brackets).", ""]
    if results["task"] == "separate":
        lines += ["Separation is scored per talker on the pairing of outputs and talkers with the best "
                  "SI-SDR (PIT), then averaged over the two talkers; SI-SDRi and SDRi are the gains over "
                  "the unprocessed mixture, SDR is BSS-eval v3 (mir_eval, 512-tap distortion filter).", ""]
    with_bitrate = any(s.get("bitrate_kbps") for s in systems.values())
    header = ["system", "params", "latency ms", "RTF"] + (["RTF batched"] if batched else []) \
        + (["kbps"] if with_bitrate else []) + [h for _, h, _ in present]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s in systems.items():
        label = name + ("" if s.get("trained") in (None, True) else " (untrained)")
        row = [label, _params(s.get("parameters")), _fmt(s.get("latency_ms"), "{:.1f}"), _fmt(s.get("rtf"), "{:.3f}")]
        row += [_fmt(s.get("rtf_batched"), "{:.4f}") + (f" (x{s['batch']})" if s.get("batch") else "")] \
            if batched else []
        row += [_fmt(s.get("bitrate_kbps"), "{:g}")] if with_bitrate else []
        row += [_fmt(s["mean"].get(k), f) for k, _, f in present]
        lines.append("| " + " | ".join(row) + " |")
    if "clean_dnsmos" in results:
        c = results["clean_dnsmos"]
        row = ["clean (reference)", "", "", ""] + ([""] if batched else []) + ([""] if with_bitrate else [])
        row += [_fmt(c.get(k), f) if k.startswith("dnsmos") else "" for k, _, f in present]
        lines.append("| " + " | ".join(row) + " |")
    if "clean_dnsmos" in results:
        lines += ["", "The clean row is DNSMOS of the dev set's clean references (no system output): a system above "
                  "it on DNSMOS removes more than the added noise (room tone, voice effects of the recordings), "
                  "which the intrusive metrics count against it."]
    groups = sorted({g for s in systems.values() for g in s.get("by_group", {})}, key=float)
    if groups:
        group_name = "SNR dB" if results["task"] == "enhance" else "overlap"
        for key, title, pattern in present:
            if key not in GROUPED.get(results["task"], GROUPED_DEFAULT):
                continue
            lines += ["", f"{title} by {group_name}:", "",
                      "| system | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
            for name, s in systems.items():
                lines.append(f"| {name} | " + " | ".join(_fmt(s["by_group"].get(g, {}).get(key), pattern)
                                                          for g in groups) + " |")
    lines += ["", "Systems:", ""] + [f"- **{n}**: {s.get('description', '')}" for n, s in systems.items()]
    if results["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def write_report(results: dict, out: str | Path, command: str, example: dict | None = None) -> list[Path]:
    """Write results.json, README.md and plots into ``out``; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "README.md"]
    (out / "results.json").write_text(json.dumps({**results, "command": command}, indent=1) + "\n")
    (out / "README.md").write_text(markdown(results, command))
    try:
        import matplotlib
    except ImportError:
        results["notes"].append("plots skipped: pip install matplotlib")
        return written
    matplotlib.use("Agg")
    written.append(_quality_vs_rtf(results, out / "quality_vs_rtf.png"))
    if example:
        written.append(_spectrograms(example, out / "spectrograms.png"))
    return written


def _quality_vs_rtf(results: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt
    keys = [k for k in PLOTTED.get(results["task"], PLOTTED_DEFAULT)
            if any(k in s["mean"] for s in results["systems"].values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, s in results["systems"].items():
            if key not in s["mean"]:
                continue
            if not s.get("rtf"):  # the unprocessed input costs nothing: a reference line, not a point
                ax.axhline(s["mean"][key], ls="--", color="gray", lw=1, label=f"{name} (input)")
                ax.legend(fontsize=8, loc="best")
                continue
            ax.scatter(s["rtf"], s["mean"][key])
            ax.annotate(name, (s["rtf"], s["mean"][key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("real-time factor, 1 thread (log)")
        ax.set_ylabel(dict((k, h) for k, h, _ in COLUMNS)[key])
        ax.grid(alpha=0.3)
    fig.suptitle(f"{results['task']}: quality vs speed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _spectrograms(example: dict, path: Path) -> Path:
    """``example``: {"title": str, "rate": int, "signals": {label: array}} -> stacked log spectrograms."""
    import matplotlib.pyplot as plt
    signals = example["signals"]
    fig, axes = plt.subplots(len(signals), 1, figsize=(9, 1.9 * len(signals)), sharex=True, squeeze=False)
    rate = example["rate"]
    for ax, (label, x) in zip(axes[:, 0], signals.items(), strict=True):
        floor = 1e-7 * np.random.default_rng(0).standard_normal(len(x))  # -140 dB: digital silence shows dark
        ax.specgram(np.asarray(x, dtype=np.float64) + floor, NFFT=512, Fs=rate, noverlap=384, cmap="magma",
                    vmin=-130, vmax=-30)
        ax.set_ylabel("Hz")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("s")
    fig.suptitle(example["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)  # noise texture compresses badly: keep the figure small
    plt.close(fig)
    return path


def example_signals(systems: dict, folder: Path, entry: dict, spec: dict) -> dict:
    """Run every system on one dev clip for the spectrogram figure (a separator: each output beside the
    talker that the best-SI-SDR pairing gives it)."""
    audio, rate = sf.read(str(folder / entry[spec["input"]]), dtype="float32")
    signals = {f"input ({spec['input']})": audio}
    references = np.stack([sf.read(str(folder / entry[ref]), dtype="float32")[0] for ref in spec["references"]])
    signals.update(zip(spec["references"], references, strict=True))
    for name, system in systems.items():
        if name == "noisy":  # the input row already shows it
            continue
        system.reset()
        y = np.atleast_2d(system.process(audio, rate))
        if len(y) == 1:
            signals[name] = y[0]
            continue
        for ref, i in zip(spec["references"], pit_order(references, y), strict=True):
            signals[f"{name} -> {ref}"] = y[i]
    group = spec["group"]
    title = f"clip {entry['id']}" + (f", {group} = {entry[group]}" if group else "")
    return {"title": title, "rate": rate, "signals": signals}
