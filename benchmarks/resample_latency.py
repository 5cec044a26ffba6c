"""Resampling latency and quality per client rate and resampler setting (issue 12).

For each client rate (8000, 22050, 24000, 44100, 48000 Hz, all against the 16 kHz `enhance`) and each
streaming resampler setting (our windowed-sinc "LL"; soxr's QQ, LQ, MQ, HQ, VHQ), prints:

- latency: `ready.latency_ms` of an `enhance` stream at that rate, the pipeline's own
  `stream_latency` (input one sample at a time; 32 ms is the model's share), and the longest hold
  of each resampler alone (`_resampler_hold`, fed one sample at a time);
- quality of each direction (rate -> 16 kHz "in", 16 kHz -> rate "out"), with pure tones:
  passband ripple (largest gain error in dB of tones from 100 Hz to 7 kHz, 3.5 kHz at 8 kHz),
  rejection (dB: downsampling, the largest output of tones between the lower Nyquist frequency and
  the input's, i.e. aliasing; upsampling, the largest residual beside an in-band tone, i.e. images);
- SI-SDR (dB) of `enhance` streamed at that rate against `enhance` at 16 kHz, on the repo's speech
  clip (tests/models/data/speech_16k.flac), both compared at 16 kHz after soxr VHQ offline.

- CPU per message (`--cpu-only` prints just this): microseconds of `StreamResampler.process` per
  16 ms message (768 samples at 48 kHz), each direction, 1 and 2 channels, the median of 7 repeats
  over 2 s of noise, every quality measured in the same run (soxr HQ is the reference for LL).

    nice -n 15 python benchmarks/resample_latency.py [--rates 8000 48000] [--qualities LL HQ] [--cpu-only]

One thread (OMP_NUM_THREADS=1 is set here); the CPU figures vary with machine load (printed).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from wavestream.engine.pipeline import StreamPipeline, _resampler_hold, stream_latency  # noqa: E402
from wavestream.evaluate.harness import machine_load  # noqa: E402
from wavestream.models.registry import load_model  # noqa: E402
from wavestream.streaming.resample import QUALITIES, StreamResampler, resample  # noqa: E402

MODEL_RATE = 16000
SPEECH = Path(__file__).parents[1] / "tests" / "models" / "data" / "speech_16k.flac"


def tone(freq: float, rate: int, seconds: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[:, None]


def streamed(x: np.ndarray, in_rate: int, out_rate: int, quality: str) -> np.ndarray:
    """x through a StreamResampler in 20 ms pieces, flushed."""
    stream, piece = StreamResampler(in_rate, out_rate, x.shape[1], quality), max(in_rate // 50, 1)
    return np.concatenate([*(stream.process(x[p:p + piece]) for p in range(0, len(x), piece)), stream.flush()])


def fit(y: np.ndarray, freq: float, rate: int) -> tuple[float, float]:
    """(amplitude of the tone at freq in y, rms of what is left), away from the edges."""
    y = y[len(y) // 5:-len(y) // 5, 0].astype(np.float64)
    t = (np.arange(len(y)) + len(y) // 4) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(np.hypot(*coef)), float(np.sqrt(np.mean((y - basis @ coef) ** 2)))


def tone_quality(in_rate: int, out_rate: int, quality: str) -> tuple[float, float]:
    """(passband ripple dB, rejection dB) of in_rate -> out_rate."""
    nyquist = min(in_rate, out_rate) / 2
    edge = min(7000.0, 0.875 * nyquist)
    ripple = 0.0
    for f in np.linspace(100, edge, 24):
        amp, _ = fit(streamed(tone(f, in_rate), in_rate, out_rate, quality), f, out_rate)
        ripple = max(ripple, abs(20 * np.log10(amp / 0.5)))
    worst = 0.0  # largest unwanted output, relative to the tone's amplitude (rms of a 0.5 sine)
    if out_rate < in_rate:  # aliasing: tones the output cannot hold must vanish
        for f in np.linspace(nyquist + 20, in_rate / 2 - 20, 24):
            y = streamed(tone(f, in_rate), in_rate, out_rate, quality)
            worst = max(worst, float(np.sqrt(np.mean(y[len(y) // 5:-len(y) // 5] ** 2))))
    else:  # imaging: only the tone may come out
        for f in np.linspace(100, nyquist - 20, 24):
            _, rest = fit(streamed(tone(f, in_rate), in_rate, out_rate, quality), f, out_rate)
            worst = max(worst, rest)
    return ripple, -20 * np.log10(max(worst, 1e-12) / (0.5 / np.sqrt(2)))


def message_cost(in_rate: int, out_rate: int, channels: int, quality: str, ms: int = 16, repeats: int = 7) -> float:
    """Median microseconds of one ``process`` call on ``ms`` ms messages (2 s of noise, 5 to warm up)."""
    n = in_rate * ms // 1000
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2 * in_rate, channels)).astype(np.float32)
    pieces = [x[p:p + n] for p in range(0, len(x) - n + 1, n)]
    times = []
    for _ in range(repeats):
        stream = StreamResampler(in_rate, out_rate, channels, quality)
        for piece in pieces[:5]:
            stream.process(piece)
        start = time.perf_counter()
        for piece in pieces[5:]:
            stream.process(piece)
        times.append((time.perf_counter() - start) / (len(pieces) - 5) * 1e6)
    return float(np.median(times))


def print_message_costs(rates: list[int], qualities: list[str]) -> None:
    print(machine_load())
    print("us per 16 ms message (median of 7): rate -> 16 kHz | 16 kHz -> rate, 1 channel / 2 channels")
    print("rate   " + "".join(f"| {q:>4} in 1ch/2ch  out 1ch/2ch " for q in qualities))
    for rate in rates:
        cells = []
        for quality in qualities:
            c = [message_cost(a, b, ch, quality) for a, b in ((rate, MODEL_RATE), (MODEL_RATE, rate)) for ch in (1, 2)]
            cells.append(f"|  {c[0]:5.1f} /{c[1]:5.1f}   {c[2]:5.1f} /{c[3]:5.1f}  ")
        print(f"{rate:5d}  " + "".join(cells), flush=True)
    print(machine_load())


def run_pipeline(model, rate: int, quality: str, x: np.ndarray) -> np.ndarray:
    pipe = StreamPipeline(model, rate, 1, quality)
    piece = rate // 50
    outs = [pipe.process(x[p:p + piece]).audio for p in range(0, len(x), piece)]
    return np.concatenate([*outs, pipe.finish().audio])


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    estimate, reference = estimate.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    n = min(len(estimate), len(reference))
    estimate, reference = estimate[:n], reference[:n]
    target = np.dot(estimate, reference) / np.dot(reference, reference) * reference
    return float(10 * np.log10(np.sum(target ** 2) / np.sum((estimate - target) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[8000, 22050, 24000, 44100, 48000])
    parser.add_argument("--qualities", nargs="+", default=list(QUALITIES), choices=QUALITIES)
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU per message table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.cpu_only:
        print_message_costs(args.rates, args.qualities)
        return
    print(machine_load())
    model = load_model("enhance")
    speech, rate = sf.read(SPEECH, dtype="float32", always_2d=True)
    assert rate == MODEL_RATE
    speech *= 0.5 / np.abs(speech).max()
    reference = run_pipeline(model, MODEL_RATE, "LL", speech)  # no resampling at the model's rate
    print(f"enhance at 16 kHz: {stream_latency(MODEL_RATE, MODEL_RATE, model.hop, model.latency, True) * 1000:.2f} ms; "
          f"{len(speech) / MODEL_RATE:.1f} s speech clip; trained weights: {getattr(model, 'trained', '?')}")
    print("rate   quality latency_ms hold_in_ms hold_out_ms | in: ripple_dB reject_dB | out: ripple_dB reject_dB |"
          " SI-SDR_dB  cpu_ms/s")
    for rate in args.rates:
        x = resample(speech, MODEL_RATE, rate, "VHQ")
        for quality in args.qualities:
            latency = stream_latency(rate, MODEL_RATE, model.hop, model.latency, True, quality)
            hold_in = _resampler_hold(rate, MODEL_RATE, 1, quality)
            hold_out = _resampler_hold(MODEL_RATE, rate, 1, quality)
            in_ripple, in_reject = tone_quality(rate, MODEL_RATE, quality)
            out_ripple, out_reject = tone_quality(MODEL_RATE, rate, quality)
            y = run_pipeline(model, rate, quality, x)
            sdr = si_sdr(resample(y, rate, MODEL_RATE, "VHQ"), reference)
            # resampler CPU time: both directions over the clip in 20 ms pieces, per second of audio
            start = time.process_time()
            streamed(streamed(x, rate, MODEL_RATE, quality), MODEL_RATE, rate, quality)
            cpu = (time.process_time() - start) / (len(speech) / MODEL_RATE) * 1000
            print(f"{rate:5d}  {quality:>4}  {latency * 1000:9.2f}  {hold_in * 1000:9.2f}  {hold_out * 1000:10.2f} |"
                  f"  {in_ripple:9.4f}  {in_reject:8.1f}  |  {out_ripple:9.4f}  {out_reject:8.1f}  |"
                  f"  {sdr:8.2f}  {cpu:7.2f}", flush=True)
    print(machine_load())


if __name__ == "__main__":
    main()
