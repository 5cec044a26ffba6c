"""Where does ``codec`` lose its quality: the quantizer or the decoder, magnitude or phase? (issue 9)

Reads the frozen dev sets (``data/devsets/codec`` and ``codec-ood``, through the harness's loader and its
``--limit`` spread, so the clips are the ones ``wavestream eval codec --limit N`` scores) and the shipped
weights; writes nothing. Every signal is scored against the clean reference with the harness's PESQ-WB,
STOI and SI-SDR (``wavestream.evaluate.metrics``) and the training recipe's log-mel distance
(``MultiScaleMelLoss.distance_db``, windows 64-2048, the codec's dev score; lower is better). Rows:

- round trip at 1.5 / 3 / 6 kbps, and **unquantized**: the encoder's continuous latents straight into the
  decoder (``decoder(encoder(x))``, the RVQ skipped). Offline float32 encoder, as the recipe's dev score;
  the harness streams a float64 encoder, which could flip a code at a near tie (``--check N`` compares
  the audio on N clips: identical on those checked, and the means equal the harness's published ones);
- **decoder frame, 640/320**: the decoder's own output spectrum (captured at its inverse STFT's input),
  swapped with the reference's spectrum in the same causal 640/320 sqrt-Hann frames (the encoder's STFT),
  then the decoder's own inverse STFT: decoder magnitude + reference phase, reference magnitude +
  decoder phase. This splits what the decoder predicts; its spectrum need not be the spectrum of its
  output (an inverse STFT of inconsistent frames cancels part of them), which the last table measures;
- **output, 512/128**: the same swap on the output waveform, analysed with a causal 512/128 sqrt-Hann STFT
  (``wavestream.streaming.STFT`` / ``ISTFT``, 75 % overlap): what a listener gets, whatever frames made it;
- ``codec2-3200`` (the harness's peer, aligned by its measured delay) and the same 512/128 swap of it;
- anchors: reference magnitude + uniformly random phase (seeded per clip) in either framing, i.e. what
  fully incoherent phase costs; and reference magnitude + a Griffin-Lim phase (64 iterations from that
  random phase): a phase consistent across frames that is not the reference's, i.e. what coherent phase
  alone buys without following the waveform; and reference magnitude + the causal phase vocoder's phase
  (``wavestream.streaming.PhaseVocoder``, frame by frame, no look-ahead), i.e. what the ``phase="vocoder"``
  decoder can reach with a perfect magnitude.

Also printed, in the decoder's 640/320 frames: the phase error against the reference of the decoder's
spectrum and of its output's, magnitude weighted (mean |wrapped difference| in radians; random phase gives
pi/2 = 1.57), absolute and of the frame-to-frame advance (the instantaneous frequency, which is what keeps
a harmonic coherent); the median level of their bins over the reference's; and how much of the decoder
spectrum's energy its overlap-add cancels. All 100 clips take ~2.6 min on one thread.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/codec_diagnosis.py [--limit N] \\
        [--devsets codec,codec-ood] [--weights PATH] [--no-codec2] [--check 2]

``--vocoder-frames 640/320,480/160,640/160,320/80`` measures only the clean reference's magnitude with the
causal phase vocoder's phase in each of those framings (analysis and synthesis in the same causal
sqrt-Hann frames): how much overlap the vocoder needs, which chose the shipped decoder's 480/160 synthesis
frames (10 clips per set: ``--limit 10``, ~20 s).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import numpy as np
import soundfile as sf
import torch

from wavestream.data.devset import load_devset
from wavestream.evaluate.harness import _spread, machine_load
from wavestream.evaluate.metrics import pesq_wb, si_sdr, stoi
from wavestream.evaluate.peers import RegistryModel, load_peer, missing_for
from wavestream.models.registry import load_model
from wavestream.streaming import ISTFT, STFT
from wavestream.streaming.phase import PhaseVocoder
from wavestream.train.losses import MultiScaleMelLoss

RATE = 16000
ANALYSIS = (512, 128)  # the output-side swap's STFT: 32 ms sqrt-Hann, 8 ms hop
BITRATES = (1.5, 3.0, 6.0)
GRIFFIN_LIM = 64  # iterations of the consistent-phase anchor, from the random phase
ACTIVE_DB = 40.0  # consistency(): frames within this many dB of the clip's loudest count as speech
#: (row key, label) in print order
ROWS = [
    ("rt@1.5", "codec 1.5 kbps"),
    ("rt@3", "codec 3 kbps"),
    ("rt@6", "codec 6 kbps"),
    ("rt@unq", "codec unquantized (latents -> decoder)"),
    ("dec@3:mag", "3 kbps, decoder magnitude + reference phase (640/320)"),
    ("dec@3:phase", "3 kbps, reference magnitude + decoder phase (640/320)"),
    ("dec@unq:mag", "unquantized, decoder magnitude + reference phase (640/320)"),
    ("dec@unq:phase", "unquantized, reference magnitude + decoder phase (640/320)"),
    ("out@3:mag", "3 kbps output magnitude + reference phase (512/128)"),
    ("out@3:phase", "reference magnitude + 3 kbps output phase (512/128)"),
    ("c2", "Codec2 3200"),
    ("c2:mag", "Codec2 3200 magnitude + reference phase (512/128)"),
    ("c2:phase", "reference magnitude + Codec2 3200 phase (512/128)"),
    ("rand:640", "reference magnitude + random phase (640/320)"),
    ("rand:512", "reference magnitude + random phase (512/128)"),
    ("gl:640", f"reference magnitude + Griffin-Lim phase ({GRIFFIN_LIM} iterations, 640/320)"),
    ("gl:512", f"reference magnitude + Griffin-Lim phase ({GRIFFIN_LIM} iterations, 512/128)"),
    ("pv:640", "reference magnitude + causal phase-vocoder phase (640/320)"),
]


class SpectrumTap:
    """Records the complex spectrum the decoder hands its inverse STFT (the decoder's own magnitude and phase)."""

    def __init__(self, istft: ISTFT):
        self.istft, self.spec = istft, None

    def __enter__(self) -> SpectrumTap:
        step = type(self.istft).step

        def tapped(x, state):
            self.spec = x
            return step(self.istft, x, state)

        self.istft.step = tapped  # an instance attribute: step_child calls child.step
        return self

    def __exit__(self, *exc) -> None:
        del self.istft.step


def stft_pair(n_fft: int, hop: int) -> tuple[STFT, ISTFT]:
    return STFT(n_fft, hop, "sqrt_hann"), ISTFT(n_fft, hop, "sqrt_hann")


def analyse(stft: STFT, x: np.ndarray) -> torch.Tensor:
    """Causal spectrum ``[1, 1, F, frames]`` of ``x`` padded with ``n_fft - hop`` zeros (so ISTFT gives it back
    whole) and to whole hops."""
    delay = stft.n_fft - stft.hop_length
    n = len(x) + delay
    n += -n % stft.hop_length
    return stft(torch.from_numpy(np.pad(x, (0, n - len(x))).astype(np.float32)).reshape(1, 1, -1))


def synthesize(istft: ISTFT, spec: torch.Tensor, length: int) -> np.ndarray:
    delay = istft.n_fft - istft.hop_length
    return istft(spec).reshape(-1)[delay:delay + length].numpy()


def combine(magnitude: torch.Tensor, phase_of: torch.Tensor) -> torch.Tensor:
    return torch.polar(magnitude.abs(), torch.angle(phase_of))


def random_phase(spec: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    angle = (torch.rand(spec.shape, generator=g) * 2 - 1) * math.pi
    return torch.polar(spec.abs(), angle)


def griffin_lim(stft: STFT, istft: ISTFT, reference: torch.Tensor, length: int, seed: int) -> np.ndarray:
    """Audio whose spectrum has the reference's magnitude and a self-consistent phase that is not the
    reference's (Griffin-Lim from a random phase, in the same causal frames)."""
    spec = random_phase(reference, seed)
    for _ in range(GRIFFIN_LIM):
        spec = combine(reference, analyse(stft, synthesize(istft, spec, length)))
    return synthesize(istft, spec, length)


def wrapped(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def phase_errors(decoded: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Magnitude-weighted mean |phase error| (rad) of a spectrum against the reference's in the same frames:
    absolute, and of the frame-to-frame phase advance (weighted by the smaller of the two frames' magnitudes)."""
    d, r = decoded[0, 0], reference[0, 0]  # [F, frames]
    weight = r.abs()
    absolute = wrapped(torch.angle(d) - torch.angle(r)).abs()
    advance = wrapped(torch.diff(torch.angle(d), dim=-1) - torch.diff(torch.angle(r), dim=-1)).abs()
    w_adv = torch.minimum(weight[:, 1:], weight[:, :-1])
    return float((absolute * weight).sum() / weight.sum()), float((advance * w_adv).sum() / w_adv.sum())


def consistency(decoded: torch.Tensor, output: torch.Tensor, reference: torch.Tensor) -> tuple[float, float, float]:
    """How far the decoder's spectrum is from the spectrum of the audio it makes (both in the decoder's
    640/320 frames): the median level of its bins over the reference's, and of the output's bins over the
    reference's (dB, bins of frames within ACTIVE_DB of the clip's loudest frame), and the decoder
    spectrum's energy over the output's (dB): what the overlap-add of its frames cancels."""
    d, y, r = decoded[0, 0].abs(), output[0, 0].abs(), reference[0, 0].abs()
    frame_db = 10 * torch.log10(r.square().sum(0) + 1e-20)
    active = frame_db > frame_db.max() - ACTIVE_DB
    level = lambda a: 20 * torch.log10(a[:, active] + 1e-7)  # noqa: E731
    return (float((level(d) - level(r)).median()), float((level(y) - level(r)).median()),
            float(10 * torch.log10(d.square().sum() / y.square().sum())))


def scores(reference: np.ndarray, estimate: np.ndarray, mel: MultiScaleMelLoss) -> dict[str, float]:
    ref, est = torch.from_numpy(reference.astype(np.float32))[None], torch.from_numpy(estimate.astype(np.float32))[None]
    return {"pesq": pesq_wb(reference, estimate), "stoi": stoi(reference, estimate),
            "mel_db": float(mel.distance_db(est, ref)[0]), "si_sdr": si_sdr(reference, estimate)}


@torch.inference_mode()
def diagnose_clip(model, x: np.ndarray, codec2, mel: MultiScaleMelLoss, seed: int) -> tuple[dict, dict]:
    """Every row's scores for one clip, and the decoder's phase errors."""
    n = len(x)
    latency, hop = model.latency, model.hop
    total = n + latency
    total += -total % hop
    padded = torch.from_numpy(np.pad(x, (0, total - n))).reshape(1, 1, -1)
    latents = model.encoder(padded)
    codec_stft, codec_istft = stft_pair(model.encoder.stft.n_fft, model.encoder.stft.hop_length)
    ref_codec = codec_stft(padded)  # the encoder's own frames: decoder frame k predicts this frame k
    an_stft, an_istft = stft_pair(*ANALYSIS)
    ref_an = analyse(an_stft, x)
    signals, decoded, phase = {}, {}, {}
    for key, n_q in [*((f"{b:g}", model.n_q_for(b)) for b in BITRATES), ("unq", None)]:
        z = latents if n_q is None else model.quantizer.decode(model.quantizer.encode(latents, n_q))
        with SpectrumTap(model.decoder.istft) as tap:
            y = model.decoder(z)
        signals[f"rt@{key}"] = y.reshape(-1)[latency:latency + n].numpy()
        # the output in the encoder's frames: y lags the input by `latency` samples
        decoded[key] = tap.spec, codec_stft(torch.nn.functional.pad(y[..., latency:], (0, latency)))
    for key in ("3", "unq"):
        spec, out_spec = decoded[key]
        signals[f"dec@{key}:mag"] = synthesize(codec_istft, combine(spec, ref_codec), n)
        signals[f"dec@{key}:phase"] = synthesize(codec_istft, combine(ref_codec, spec), n)
        phase[key] = (*phase_errors(spec, ref_codec), *phase_errors(out_spec, ref_codec),
                      *consistency(spec, out_spec, ref_codec))
    phase["random"] = phase_errors(random_phase(ref_codec, seed), ref_codec)
    out = analyse(an_stft, signals["rt@3"])
    signals["out@3:mag"] = synthesize(an_istft, combine(out, ref_an), n)
    signals["out@3:phase"] = synthesize(an_istft, combine(ref_an, out), n)
    if codec2 is not None:
        codec2.reset()
        signals["c2"] = np.asarray(codec2.process(x, RATE), dtype=np.float32)
        c2 = analyse(an_stft, signals["c2"])
        signals["c2:mag"] = synthesize(an_istft, combine(c2, ref_an), n)
        signals["c2:phase"] = synthesize(an_istft, combine(ref_an, c2), n)
    signals["rand:640"] = synthesize(codec_istft, random_phase(ref_codec, seed), n)
    signals["rand:512"] = synthesize(an_istft, random_phase(ref_an, seed), n)
    signals["gl:640"] = griffin_lim(codec_stft, codec_istft, ref_codec, n, seed)
    signals["gl:512"] = griffin_lim(an_stft, an_istft, ref_an, n, seed)
    vocoder = PhaseVocoder(codec_stft.n_fft, codec_stft.hop_length)
    signals["pv:640"] = synthesize(codec_istft, vocoder(ref_codec.abs()), n)
    return {k: scores(x, v, mel) for k, v in signals.items()}, phase


def check_against_harness(model, weights, folder, entries, clips: int) -> None:
    """The harness's own round trip (streamed, float64 encoder) against this script's (offline float32
    encoder) at 3 kbps: the largest sample difference and the PESQ-WB of each."""
    system = RegistryModel("codec", weights, bitrate=3.0)
    for entry in entries[:clips]:
        x, rate = sf.read(str(folder / entry["clean"]), dtype="float32")
        harness = system.process(x, rate)
        with torch.inference_mode():
            n, latency, hop = len(x), model.latency, model.hop
            total = n + latency + (-(n + latency) % hop)
            z = model.encoder(torch.from_numpy(np.pad(x, (0, total - n))).reshape(1, 1, -1))
            ours = model.decoder(model.quantizer.decode(model.quantizer.encode(z, model.n_q_for(3.0))))
            ours = ours.reshape(-1)[latency:latency + n].numpy()
        print(f"check {entry['id']}: max |harness - ours| {np.abs(harness - ours).max():.2e}, PESQ-WB harness "
              f"{pesq_wb(x, harness):.3f}, ours {pesq_wb(x, ours):.3f}")


def vocoder_framings(devsets: list[str], limit: int, framings: list[tuple[int, int]]) -> None:
    """The clean magnitude with the vocoder's phase, analysed and synthesized in each framing."""
    mel = MultiScaleMelLoss(RATE)
    print(f"clean magnitude + causal phase-vocoder phase: {limit or 'all'} clips per dev set; {machine_load()}")
    clips = {}
    for name in devsets:
        folder, entries = load_devset(name)
        entries = _spread(entries, limit) if limit else entries
        clips[name] = [sf.read(str(folder / entry["clean"]), dtype="float32")[0] for entry in entries]
    header = " | ".join(f"{d} PESQ-WB | {d} STOI | {d} log-mel dB" for d in devsets)
    print(f"\n| window / hop | {header} |\n|---|" + "---|" * (3 * len(devsets)))
    for n_fft, hop in framings:
        stft, istft = stft_pair(n_fft, hop)
        vocoder = PhaseVocoder(n_fft, hop)
        cells = []
        for name in devsets:
            rows = [scores(x, synthesize(istft, vocoder(analyse(stft, x).abs()), len(x)), mel) for x in clips[name]]
            cells.append(" | ".join(f"{np.mean([r[m] for r in rows]):{f}}"
                                    for m, f in (("pesq", ".2f"), ("stoi", ".3f"), ("mel_db", ".2f"))))
        print(f"| {n_fft} / {hop} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0,
                        help="clips per dev set, spread as the harness spreads them (default: all 50)")
    parser.add_argument("--devsets", default="codec,codec-ood")
    parser.add_argument("--weights", help="codec weights (default: the shipped ones)")
    parser.add_argument("--no-codec2", action="store_true", help="leave out the Codec2 3200 rows")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="first compare the harness's round trip with this script's on N clips")
    parser.add_argument("--vocoder-frames", metavar="W/H,...",
                        help="only the clean magnitude + vocoder phase in these window/hop framings")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.vocoder_frames:
        vocoder_framings(args.devsets.split(","), args.limit,
                         [tuple(int(v) for v in f.split("/")) for f in args.vocoder_frames.split(",")])
        return
    model = load_model("codec", args.weights).eval()
    if not model.trained:
        raise SystemExit("codec has no trained weights here")
    codec2 = None
    if not args.no_codec2:
        if (missing := missing_for("codec2-3200")) is not None:
            print(f"Codec2 rows left out: {missing}")
        else:
            codec2 = load_peer("codec2-3200")
    mel = MultiScaleMelLoss(RATE)
    devsets = args.devsets.split(",")
    print(f"codec diagnosis: {args.limit or 'all'} clips per dev set, 1 thread; {machine_load()}")
    table: dict[str, dict[str, dict[str, float]]] = {}
    phases: dict[str, dict[str, list]] = {}
    for name in devsets:
        folder, entries = load_devset(name)
        entries = _spread(entries, args.limit) if args.limit else entries
        if args.check:
            check_against_harness(model, args.weights, folder, entries, args.check)
        rows, errs = defaultdict(list), defaultdict(list)
        started = time.perf_counter()
        for k, entry in enumerate(entries):
            x, rate = sf.read(str(folder / entry["clean"]), dtype="float32")
            if rate != RATE:
                raise SystemExit(f"{name}: expected {RATE} Hz, got {rate}")
            clip, phase = diagnose_clip(model, x, codec2, mel, seed=k)
            for key, s in clip.items():
                rows[key].append(s)
            for key, e in phase.items():
                errs[key].append(e)
        table[name] = {key: {m: float(np.nanmean([s[m] for s in v])) for m in v[0]} for key, v in rows.items()}
        phases[name] = errs
        print(f"{name}: {len(entries)} clips in {time.perf_counter() - started:.0f} s")
    header = " | ".join(f"{d} PESQ-WB | {d} STOI | {d} log-mel dB | {d} SI-SDR dB" for d in devsets)
    print(f"\n| signal | {header} |\n|---|" + "---|" * (4 * len(devsets)))
    for key, label in ROWS:
        if all(key in table[d] for d in devsets):
            cells = " | ".join(f"{table[d][key]['pesq']:.2f} | {table[d][key]['stoi']:.3f} | "
                               f"{table[d][key]['mel_db']:.2f} | {table[d][key]['si_sdr']:.1f}" for d in devsets)
            print(f"| {label} | {cells} |")
    print("\nIn the decoder's 640/320 frames, mean over clips: phase error against the reference (rad, magnitude "
          "weighted; random phase gives pi/2 = 1.57), of the decoder's spectrum and of its output's; median bin "
          f"level over the reference's (dB, frames within {ACTIVE_DB:g} dB of the loudest); the decoder "
          "spectrum's energy over its output's (dB, what the overlap-add cancels):")
    print("\n| dev set | spectrum | phase error | phase-advance error | level over reference dB | "
          "energy over output dB |\n|---|---|---|---|---|---|")
    for d in devsets:
        for key, label in (("3", "3 kbps"), ("unq", "unquantized")):
            e = np.array(phases[d][key]).mean(0)
            print(f"| {d} | {label}, decoder | {e[0]:.2f} | {e[1]:.2f} | {e[4]:+.1f} | {e[6]:+.1f} |")
            print(f"| {d} | {label}, output | {e[2]:.2f} | {e[3]:.2f} | {e[5]:+.1f} | |")
        e = np.array(phases[d]["random"]).mean(0)
        print(f"| {d} | reference magnitude, random phase | {e[0]:.2f} | {e[1]:.2f} | | |")


if __name__ == "__main__":
    main()
