"""Two other causal phases for the codec's magnitudes, measured without retraining (issue 9).

The shipped decoder predicts magnitudes and ``PhaseVocoder`` (peak picking + identity phase locking) gives the
phase. Would another phase from the same magnitudes do better? Two candidates, both causal (no look-ahead):

- **phase-gradient heap integration** (Prusa & Holighaus, "Phase vocoder done right", 2017): for a Gaussian
  window of time-frequency spread ``lam`` (samples^2), a bin's phase advance per hop is ``2 pi a k / M + (a M /
  lam) ds/dk`` and its phase step to the next bin ``-(lam / (a M)) ds/dn`` (``s`` the log magnitude, ``a`` the
  hop, ``M`` the FFT size; the time derivative taken backward, as no later frame is known). Each frame's phase is
  integrated from the loudest known bins outwards (a max-heap over the previous frame's bins and the bins already
  set), in time from the previous frame or in frequency from a neighbour. Our sqrt-Hann window is not Gaussian;
  ``lam`` is given as a fraction of the window's length squared and swept;
- the shipped vocoder with fewer peaks: a floor of 40 or 60 dB under the loudest bin instead of 80. (Peaks as
  maxima over +-2 bins instead of +-1 were measured with this script as of commit afcc63b, which copied the
  vocoder's loop for it.)

Rows: the clean reference's magnitude in the decoder's 480/160 synthesis frames with each phase (the ceiling
each phase allows), and the shipped codec's own decoded magnitudes at 3 kbps with each phase (what it gives
the shipped weights as they are: the decoder learned its magnitudes through the shipped vocoder). Scores are
the harness's PESQ-WB and STOI and the recipe's log-mel distance, means over the clips. Python heap per
frame: about 1 s a clip per phase.

    python benchmarks/codec_phase_alternatives.py [--limit 8] [--lams 0.3,0.35]
"""

from __future__ import annotations

import argparse
import heapq
import math

import numpy as np
import soundfile as sf
import torch
from codec_diagnosis import RATE, SpectrumTap, analyse, scores, stft_pair, synthesize

from wavestream.data.devset import load_devset
from wavestream.evaluate.harness import _spread, machine_load
from wavestream.models.registry import load_model
from wavestream.streaming.phase import PhaseVocoder
from wavestream.train.losses import MultiScaleMelLoss

N_FFT, HOP = 480, 160  # the shipped decoder's synthesis frames


def heap_phase(magnitude: np.ndarray, n_fft: int, hop: int, lam: float, floor_db: float = 80.0) -> np.ndarray:
    """Phase ``[F, frames]`` (referenced to the frame's first sample, as our STFT's) for ``magnitude`` by causal
    phase-gradient heap integration. Bins more than ``floor_db`` under a frame's loudest advance at their centre
    frequency; the first frame starts from its loudest bin at phase 0."""
    n_freqs, frames = magnitude.shape
    bins = np.arange(n_freqs)
    log_mag = np.log(magnitude + 1e-12)
    slope_f = np.zeros_like(log_mag)
    slope_f[1:-1] = (log_mag[2:] - log_mag[:-2]) / 2
    advance = 2 * math.pi * hop * bins[:, None] / n_fft + (hop * n_fft / lam) * slope_f  # per hop, per bin
    slope_t = np.zeros_like(log_mag)
    slope_t[:, 1:] = log_mag[:, 1:] - log_mag[:, :-1]
    across = -(lam / (hop * n_fft)) * slope_t  # phase step to the next bin, window-centred
    floor = floor_db / 20 * math.log(10)
    phase = np.zeros((n_freqs, frames))
    prev = np.zeros(n_freqs)
    for t in range(frames):
        col = log_mag[:, t]
        loud = col > col.max() - floor
        now = np.where(loud, 0.0, prev + 2 * math.pi * hop * bins / n_fft if t else 0.0)
        done = ~loud
        if t:
            heap = [(-log_mag[k, t - 1], k, False) for k in np.nonzero(loud)[0]]
            heapq.heapify(heap)
        else:
            start = int(np.argmax(col))
            done[start], heap = True, [(-col[start], start, True)]
        while heap:
            _, k, current = heapq.heappop(heap)
            if not current:  # a bin of the previous frame: on in time
                if not done[k]:
                    now[k] = prev[k] + (advance[k, t - 1] + advance[k, t]) / 2
                    done[k] = True
                    heapq.heappush(heap, (-col[k], k, True))
                continue
            for j in (k - 1, k + 1):  # a bin of this frame: on to its neighbours
                if 0 <= j < n_freqs and not done[j]:
                    now[j] = now[k] + (j - k) * (across[k, t] + across[j, t]) / 2
                    done[j] = True
                    heapq.heappush(heap, (-col[j], j, True))
        phase[:, t] = prev = now
    return phase - math.pi * bins[:, None] * (n_fft - 1) / n_fft  # window centre -> frame start


def vocoder_phase(magnitude: np.ndarray, n_fft: int, hop: int, floor_db: float = 80.0) -> np.ndarray:
    """``PhaseVocoder``'s phase, with peaks down to ``floor_db`` under the loudest bin (80: the shipped vocoder)."""
    return PhaseVocoder(n_fft, hop, floor_db=floor_db)(torch.from_numpy(magnitude)[None, None]).angle()[0, 0].numpy()


def phases(lams: list[float]) -> dict:
    out = {"shipped vocoder": lambda m: vocoder_phase(m, N_FFT, HOP)}
    out |= {f"vocoder, floor {f} dB": (lambda m, f=f: vocoder_phase(m, N_FFT, HOP, floor_db=f)) for f in (40, 60)}
    out |= {f"heap integration, lam {lam} L^2": (lambda m, lam=lam: heap_phase(m, N_FFT, HOP, lam * N_FFT ** 2))
            for lam in lams}
    return out


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=8, help="clips per dev set, spread as the harness spreads them")
    parser.add_argument("--devsets", default="codec,codec-ood")
    parser.add_argument("--lams", default="0.3,0.35", help="heap integration's window spreads, x window length^2")
    args = parser.parse_args()
    print(f"{args.limit} clips per dev set; {machine_load()}")
    model = load_model("codec")
    mel = MultiScaleMelLoss(RATE)
    stft, istft = stft_pair(N_FFT, HOP)
    candidates, table = phases([float(v) for v in args.lams.split(",")]), {}
    for name in args.devsets.split(","):
        folder, entries = load_devset(name)
        for entry in _spread(entries, args.limit):
            x = sf.read(str(folder / entry["clean"]), dtype="float32")[0]
            n, latency = len(x), model.latency
            total = n + latency + (-(n + latency) % model.hop)
            padded = torch.from_numpy(np.pad(x, (0, total - n))).reshape(1, 1, -1)
            codes = model.quantizer.encode(model.encoder(padded), model.n_q_for(3.0))
            with SpectrumTap(model.decoder.istft) as tap:
                model.decoder(model.quantizer.decode(codes))
            for source, magnitude in (("reference", analyse(stft, x).abs()), ("codec 3 kbps", tap.spec.abs())):
                m = magnitude[0, 0].double().numpy()
                for label, phase in candidates.items():
                    spec = torch.polar(magnitude, torch.from_numpy(phase(m)).to(magnitude.dtype)[None, None])
                    if source == "reference":
                        y = synthesize(istft, spec, n)
                    else:  # the decoder's own inverse STFT and alignment
                        y = model.decoder.istft(spec).reshape(-1)[latency:latency + n].float().numpy()
                    table.setdefault((source, label), {}).setdefault(name, []).append(scores(x, y, mel))
    sets = args.devsets.split(",")
    print("\n| magnitude | phase | " + " | ".join(f"{d} PESQ-WB | {d} STOI | {d} log-mel dB" for d in sets) + " |")
    print("|---|---|" + "---|" * (3 * len(sets)))
    for (source, label), by_set in table.items():
        cells = [f"{np.mean([r[k] for r in by_set[d]]):{f}}" for d in sets
                 for k, f in (("pesq", ".3f"), ("stoi", ".3f"), ("mel_db", ".2f"))]
        print(f"| {source} | {label} | " + " | ".join(cells) + " |")
    print(f"\n{machine_load()}")


if __name__ == "__main__":
    main()
