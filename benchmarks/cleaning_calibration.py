"""How good is a cleaned copy that passes the rule? Studio speech + game background, cleaned, against the truth.

``prepare`` keeps a cleaned copy of a noisy recording (wavestream/data/cleaning.py) when it passes
the clean-target rule and the checks that the cleaning kept the speech. On real game dialogue the
clean speech is unknown, so this measures the rule where it is known: clean studio prompts (the
Asterisk clips with DNSMOS BAK >= 3.9) mixed with the Fish Fillets music and sound effects (the
backgrounds the game dialogue carries) at 0-20 dB SNR, cleaned by the same code, then judged
against the clean prompt (STOI, SI-SDR) for three groups: every mixture, those passing the DNSMOS
rule alone, and those passing the rule plus the speech-kept checks (what ``prepare`` keeps).
One thread; about 1 s a mixture. Nothing is asserted.

    python benchmarks/cleaning_calibration.py --root data [--noise-root data] [--mixtures 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

RATE = 16000


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    target = (estimate @ reference) / (reference @ reference) * reference
    return float(10 * np.log10((target @ target) / ((estimate - target) @ (estimate - target) + 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="data", help="prepared data root with the asterisk corpus")
    parser.add_argument("--noise-root", default=None, help="root with fillets music/effects (default: --root)")
    parser.add_argument("--mixtures", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jsonl", default=None, help="also write one row per mixture here")
    args = parser.parse_args()

    from pystoi import stoi

    from wavestream.data.cleaning import clean, integrity
    from wavestream.data.manifest import load_entries
    from wavestream.data.quality import dnsmos_p835, effective_bandwidth, is_clean_target
    from wavestream.data.synth import read_clip

    speech = [e for split in ("train", "dev") for e in load_entries(args.root, "speech", split, ["asterisk"])
              if e.get("dnsmos", {}).get("bak", 0) >= 3.9 and e["duration"] > 1.5]
    noise_root = args.noise_root or args.root
    backgrounds = [e for kind in ("music", "noise") for split in ("train", "dev")
                   for e in load_entries(noise_root, kind, split) if e["speaker"].startswith("fillets")
                   and e["duration"] > 3]
    if not speech or not backgrounds:
        raise SystemExit(f"need asterisk clips (BAK >= 3.9) in {args.root} and fillets music/effects in {noise_root}")
    rng = np.random.default_rng(args.seed)
    rows = []
    out = open(args.jsonl, "w") if args.jsonl else None
    for k in range(args.mixtures):
        s = read_clip(speech[rng.integers(len(speech))], RATE)
        background = read_clip(backgrounds[rng.integers(len(backgrounds))], RATE)
        start = rng.integers(max(1, len(background) - len(s)))
        n = np.resize(background[start:], len(s))
        snr = float(rng.uniform(0, 20))
        n = n * np.sqrt(np.mean(s ** 2) / (np.mean(n ** 2) + 1e-12) / 10 ** (snr / 10))
        x = (s + n).astype(np.float32)
        peak = np.abs(x).max()
        s, x = (s / peak * 0.9, x / peak * 0.9) if peak > 0.9 else (s, x)
        y = clean(x, RATE)
        entry = {"corpus": "calibration-dfn", "kind": "speech", "dnsmos": dnsmos_p835(y, RATE),
                 "bandwidth_hz": effective_bandwidth(y, RATE), "cleaning": integrity(x, y, RATE)}
        row = {"snr_db": round(snr, 1), "true_stoi": round(float(stoi(s, y, RATE)), 3),
               "true_si_sdr": round(si_sdr(s, y), 2), "input_si_sdr": round(si_sdr(s, x), 2), **entry["cleaning"],
               **entry["dnsmos"], "bandwidth_hz": entry["bandwidth_hz"],
               "passes_dnsmos": is_clean_target({k: v for k, v in entry.items() if k != "cleaning"}),
               "kept": is_clean_target(entry)}
        rows.append(row)
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
    print(f"{args.mixtures} mixtures: asterisk studio prompts + fillets music/effects at 0-20 dB SNR, cleaned "
          f"with DeepFilterNet3, judged against the clean prompt")
    print(f"{'group':34s} {'n':>4s} {'STOI med':>8s} {'STOI min':>8s} {'SI-SDR med':>10s} {'SI-SDR min':>10s}")
    groups = (("all", rows), ("pass DNSMOS rule (BAK, bandwidth)", [r for r in rows if r["passes_dnsmos"]]),
              ("... and speech kept (prepare keeps)", [r for r in rows if r["kept"]]),
              ("... rejected by the speech checks", [r for r in rows if r["passes_dnsmos"] and not r["kept"]]))
    for name, group in groups:
        if group:
            stoi_values, sdr_values = [r["true_stoi"] for r in group], [r["true_si_sdr"] for r in group]
            print(f"{name:34s} {len(group):4d} {statistics.median(stoi_values):8.3f} {min(stoi_values):8.3f} "
                  f"{statistics.median(sdr_values):10.1f} {min(sdr_values):10.1f}")


if __name__ == "__main__":
    main()
