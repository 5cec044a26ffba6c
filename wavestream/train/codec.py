"""Training recipe for the "codec" model: clean speech -> codes -> the same speech, at 1.5, 3 and 6 kbps.

Loss (on the decoder's output against its input): multi-scale mel (log and linear mel magnitudes at
windows of 64-2048 samples), multi-resolution STFT (spectral convergence + log magnitude), waveform
L1, and the quantizer's commitment loss (optional terms on the decoder's complex spectrum, for coherent phase,
issue 9: ``CodecLoss``, ``configs/codec-phase.json``); quantizer dropout gives every example one of the offered
bitrates, so one model learns all three. Codebooks learn by EMA (no gradient), with dead codes
restarted on the batch. The committed config has no adversarial loss (see docs/models.md); a config with
an ``"adversarial"`` section adds one (``Adversary``: a multi-scale STFT discriminator, hinge losses and
feature matching, ``wavestream/train/discriminator.py``), and an ``"init"`` entry starts from existing
weights (the shipped ones, for a fine-tune: ``configs/codec-adv.json``).
Data: ``wavestream.data.CleanSpeech`` (clean clips only, seeded per index). Dev: fixed clean clips from
the dev split (held-out talkers) and from the out-of-domain split (a corpus never trained on), coded at
each bitrate; the best checkpoint has the lowest mean log-mel distance (``dev_score`` is minus it, in
dB; ``dev.score: "pesq"`` picks by the mean PESQ-WB instead, and ``dev.pesq: true`` only adds PESQ-WB to the
dev metrics). ``export`` writes the shipped weights (no EMA statistics) + card.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import wavestream
from wavestream.data import CleanSpeech
from wavestream.models.codec import SpectralCodec
from wavestream.models.encodec import RVQCodec
from wavestream.models.registry import WEIGHTS_DIR
from wavestream.streaming.quantize import inference_state_dict

from . import waveform
from .discriminator import (
    MultiScaleSTFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from .loop import BEST, LoopConfig, export_checkpoint, fit, step_batches
from .losses import (
    CompressedSpectrumLoss,
    IntelligibilityLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    SpectralConsistencyLoss,
    si_sdr,
)
from .waveform import aligned, crop_to_hop

NAME = "codec"
METRIC = "dev_score"  # minus the mean log-mel distance (dB) over the dev splits and the bitrates
#: what ``dev_score`` is made of (the config's ``dev.score``): minus the mean log-mel distance (the default),
#: or the mean PESQ-WB; ``dev.pesq`` adds PESQ-WB to the dev metrics whichever scores
DEV_SCORES = ("mel_db", "pesq")
DEFAULT_CONFIG = Path(__file__).parent / "configs" / "codec.json"
SECTIONS = ("model", "data", "dev", "loss", "train")
CORPUS_KINDS = ("speech",)  # what the codec learns from: listed in the card
#: dev split -> the name its scores get; the config's ``dev.splits`` picks which are used (both, by default)
DEV_SPLITS = {"dev": "in_domain", "ood": "out_of_domain"}


class CodecLoss(nn.Module):
    """The codec's reconstruction loss. With their weights at 0 (the defaults: today's loss, bit for bit) the
    terms on the decoder's complex spectrum ``S`` (the one its inverse STFT synthesizes, issue 9) are left out:

    - ``consistency_weight``: ``SpectralConsistencyLoss`` of ``S`` (``consistency``: its options, e.g.
      ``{"power": 0.3}``), normalized by the reference spectrum's energy in the decoder's frames;
    - ``compressed_weight``: ``CompressedSpectrumLoss`` of the output against the reference (``compressed``:
      its options; complex + magnitude, so it scores the phase too);
    - ``stoi_weight``: ``IntelligibilityLoss`` of the output against the reference (``stoi``: its options),
      the band-envelope correlations STOI measures;

    ``frames``: the decoder's ``(n_fft, hop)`` (the consistency term's STFT); the recipe passes the model's."""

    def __init__(self, sample_rate: int, mel_weight: float = 1.0, stft_weight: float = 1.0, l1_weight: float = 0.1,
                 commitment_weight: float = 1.0, mel_windows: list[int] = (64, 128, 256, 512, 1024, 2048),
                 stft_resolutions: list[list[int]] = ((512, 128), (1024, 256), (256, 64)),
                 consistency_weight: float = 0.0, consistency: dict | None = None,
                 compressed_weight: float = 0.0, compressed: dict | None = None,
                 stoi_weight: float = 0.0, stoi: dict | None = None, frames: tuple[int, int] = (640, 320)):
        super().__init__()
        self.weights = {"mel": mel_weight, "stft": stft_weight, "l1": l1_weight, "commitment": commitment_weight}
        self.mel = MultiScaleMelLoss(sample_rate, tuple(mel_windows))
        self.stft = MultiResolutionSTFTLoss([tuple(r) for r in stft_resolutions])
        self.consistency = self.compressed = self.intelligibility = None
        if consistency_weight:
            self.weights["consistency"] = consistency_weight
            self.consistency = SpectralConsistencyLoss(*frames, **(consistency or {}))
        if compressed_weight:
            self.weights["compressed"] = compressed_weight
            self.compressed = CompressedSpectrumLoss(**(compressed or {}))
        if stoi_weight:
            self.weights["stoi"] = stoi_weight
            self.intelligibility = IntelligibilityLoss(sample_rate, **(stoi or {}))

    @property
    def needs_spectrum(self) -> bool:
        """Whether ``forward`` needs the decoder's spectrum and the reference's."""
        return self.consistency is not None

    def terms(self, output: torch.Tensor, target: torch.Tensor, commitment: torch.Tensor,
              spectrum: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every weighted term, unweighted: ``spectrum`` is the decoder's complex spectrum ``[B, 1, F, n]``,
        ``reference`` the input's in the same frames (needed when ``needs_spectrum``)."""
        terms = {"mel": self.mel(output, target), "stft": self.stft(output, target),
                 "l1": (output - target).abs().mean(), "commitment": commitment}
        if self.needs_spectrum and (spectrum is None or reference is None):
            raise ValueError("this loss needs the decoder's spectrum and the reference's")
        if self.consistency is not None:
            terms["consistency"] = self.consistency(spectrum, reference)
        if self.compressed is not None:
            terms["compressed"] = self.compressed(output, target)
        if self.intelligibility is not None:
            terms["stoi"] = self.intelligibility(output, target)
        return terms

    def forward(self, output: torch.Tensor, target: torch.Tensor, commitment: torch.Tensor,
                spectrum: torch.Tensor | None = None,
                reference: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.terms(output, target, commitment, spectrum, reference)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return loss, {k: v.item() for k, v in terms.items()}


def build_loss(config: dict, model: SpectralCodec) -> CodecLoss:
    """The config's loss for ``model`` (the consistency term works in the decoder's STFT frames)."""
    return CodecLoss(model.sample_rate, **config["loss"],
                     frames=(model.decoder.istft.n_fft, model.decoder.istft.hop_length))


#: the ``"adversarial"`` section's options and their defaults (the section absent: no adversarial loss)
ADVERSARIAL_DEFAULTS = {
    "weight": 1.0,            # x the generator's hinge loss
    "feature_weight": 1.0,    # x the relative feature-matching loss
    "start_step": 0,          # the discriminator trains from this step on
    "generator_delay": 0,     # ... and the generator gets the two terms this many steps later (a fresh
                              # discriminator says nothing useful yet; its first updates cost the generator nothing)
    "lr": 1e-4,               # Adam, constant (the discriminator follows no schedule)
    "betas": [0.5, 0.9],      # EnCodec's and HiFi-GAN's: a short momentum, the opponent keeps moving
    "windows": [512, 256, 128],
    "channels": 16,
    "hop_ratio": 0.5,
    "segment_seconds": 0.5,   # the discriminator sees this much of each clip (one random offset a batch): its
                              # cost grows faster than the length (discriminator.py); 0 or null: the whole clip
}


class Adversary:
    """The adversarial part of the codec's loss: a multi-scale STFT discriminator with its own Adam, updated
    inside the generator's loss function (the loop keeps both in the checkpoints, as a "companion").

    Each step, from ``start_step`` on: one discriminator update (hinge loss, real clips against the decoded
    ones, detached), then, from ``start_step + generator_delay`` on, the generator's terms against the
    updated discriminator: ``weight`` x hinge loss + ``feature_weight`` x relative feature matching. Both
    look at the same random segment of every clip. The discriminator's weights are frozen while it judges
    for the generator, so that backward pass computes no weight gradients it would throw away."""

    def __init__(self, options: dict, sample_rate: int):
        unknown = set(options) - set(ADVERSARIAL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown adversarial options: {sorted(unknown)}; known: {sorted(ADVERSARIAL_DEFAULTS)}")
        self.options = {**ADVERSARIAL_DEFAULTS, **options}
        o = self.options
        self.discriminator = MultiScaleSTFTDiscriminator(tuple(o["windows"]), o["channels"], hop_ratio=o["hop_ratio"])
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=o["lr"], betas=tuple(o["betas"]))
        self.segment = int(round((o["segment_seconds"] or 0) * sample_rate))
        self.generator_start = o["start_step"] + o["generator_delay"]

    def _segments(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = output.shape[-1]
        if not self.segment or self.segment >= length:
            return output, target
        start = int(torch.randint(length - self.segment + 1, ()))  # the torch RNG: restored on resume
        return output[..., start:start + self.segment], target[..., start:start + self.segment]

    def __call__(self, step: int, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's adversarial terms at ``step`` (zero before they start), after the discriminator's
        update; stats always have the same keys, so the loop's running means stay means."""
        stats = {"adv": 0.0, "feat": 0.0, "d_loss": 0.0}
        if step < self.options["start_step"]:
            return output.new_zeros(()), stats
        fake, real = self._segments(output, target)
        d_loss = discriminator_hinge_loss(self.discriminator(real), self.discriminator(fake.detach()))
        if not torch.isfinite(d_loss):
            raise FloatingPointError(f"discriminator loss is {d_loss.item()} at step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizer.step()
        stats["d_loss"] = d_loss.item()
        if step < self.generator_start:
            return output.new_zeros(()), stats
        self.discriminator.requires_grad_(False)
        try:
            with torch.no_grad():
                judged_real = self.discriminator(real)
            judged_fake = self.discriminator(fake)
        finally:
            self.discriminator.requires_grad_(True)
        adv, feat = generator_hinge_loss(judged_fake), feature_matching_loss(judged_real, judged_fake)
        stats.update(adv=adv.item(), feat=feat.item())
        return self.options["weight"] * adv + self.options["feature_weight"] * feat, stats


def warm_start(model: SpectralCodec, path: str | Path, vectors_per_batch: float) -> Path:
    """Load ``path`` (a checkpoint or shipped weights) into ``model`` before training; returns the file read.

    A relative path that does not exist here is taken from the repository root. Shipped weights have no EMA
    statistics, and the quantizer then restarts every code at the dead-code threshold, where one batch that
    does not use a code would restart it on a random vector, undoing the trained codebooks: every code
    starts instead at an average code's count, as a fresh codebook does."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = Path(wavestream.__file__).resolve().parents[1] / path
    weights, target = load_file(str(path)), model.state_dict()
    head = ("decoder.output_conv.conv.weight", "decoder.output_conv.conv.bias")
    if weights[head[1]].shape != target[head[1]].shape:
        weights[head[0]], weights[head[1]] = _convert_head(weights[head[0]], weights[head[1]], model)
    _grow_blocks(target, weights, "decoder.blocks.")
    _widen(target, weights, "decoder.")
    _widen(target, weights, "encoder.input_conv.")  # a fine analysis's inputs, read by nothing at first
    model.load_state_dict(weights)  # strict: names and shapes must match the config's model
    quantizer = model.quantizer
    if "quantizer.cluster_size" not in weights:
        with torch.no_grad():
            count = quantizer._fresh_count(vectors_per_batch)
            quantizer.cluster_size.fill_(count)
            quantizer.embed_avg.copy_(quantizer.embed * count)
    return path


def _grow_blocks(target: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], prefix: str) -> None:
    """A deeper stack than ``weights`` hold starts where the shallower one stands: each added residual
    block (``prefix`` + its index) keeps its random first conv and gets a zero last conv, so it adds
    nothing until training moves it and the warm start's output is the old model's (``target``: the new model's
    state dict)."""
    for name, value in target.items():
        if name.startswith(prefix) and name not in weights:
            weights[name] = torch.zeros_like(value) if ".conv2." in name else value.clone()


def _widen(target: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], prefix: str) -> None:
    """A wider stack than ``weights`` hold starts where the narrower one stands (Net2Net's idea, with zeros):
    every old weight keeps its place, the added units keep their random weights, and the weights by which an
    old unit reads an added one start at zero, so the added units are computed but read by nothing until
    training moves those zeros (their gradient is not zero: the added units are). The GRU's matrices hold
    three gates one above the other; each gate's block is widened on its own. ``target``: the new model's state
    dict (its random weights for the added units)."""
    for name, old in list(weights.items()):
        new = target.get(name)
        if not name.startswith(prefix) or new is None or new.shape == old.shape:
            continue
        if new.dim() != old.dim() or any(n < o for n, o in zip(new.shape, old.shape, strict=True)):
            raise ValueError(f"cannot widen {name} from {tuple(old.shape)} to {tuple(new.shape)}")
        gates = 3 if ".gru." in name else 1
        wide, narrow = new.clone().unflatten(0, (gates, -1)), old.unflatten(0, (gates, -1))
        rows = narrow.shape[1]
        if wide.dim() > 2:  # the columns (inputs) an old unit reads from added units
            wide[:, :rows, narrow.shape[2]:] = 0
        wide[(slice(None),) + tuple(slice(0, n) for n in narrow.shape[1:])] = narrow
        weights[name] = wide.flatten(0, 1)


def _convert_head(weight: torch.Tensor, bias: torch.Tensor, model: SpectralCodec) -> tuple[torch.Tensor, torch.Tensor]:
    """The output conv of a codec that synthesizes in the encoder's frames (absolute or vocoder) as a start
    for ``model``'s vocoder decoder with other synthesis frames (or for a vocoder in the same frames): the
    log-magnitude rows are kept (an absolute codec's angles, random from frame to frame, are dropped),
    resampled linearly over frequency to the decoder's bins, shifted by the log of the windows' length
    ratio (a sinusoid's bin magnitude grows with the window) and repeated for each synthesis frame of a
    code frame."""
    decoder, old_freqs = model.decoder, model.encoder.stft.n_freqs
    if decoder.phase != "vocoder" or len(bias) not in (old_freqs, 2 * old_freqs):
        raise ValueError(f"cannot start this decoder's output conv ({len(bias)} rows into "
                         f"{decoder.output_conv.conv.out_channels}, phase {decoder.phase!r}) from that one")
    n_freqs = decoder.istft.n_freqs
    weight, bias = weight[:old_freqs], bias[:old_freqs]
    position = torch.arange(n_freqs, dtype=torch.float64) * (old_freqs - 1) / (n_freqs - 1)
    low = position.floor().long().clamp(max=old_freqs - 2)
    frac = (position - low).to(weight.dtype)
    new_weight = weight[low] * (1 - frac)[:, None, None] + weight[low + 1] * frac[:, None, None]
    new_bias = bias[low] * (1 - frac) + bias[low + 1] * frac + math.log((n_freqs - 1) / (old_freqs - 1))
    return new_weight.repeat(decoder.subframes, 1, 1), new_bias.repeat(decoder.subframes)


def dataset(data: dict, split: str, length: int, seconds: float, seed: int) -> CleanSpeech:
    options = {k: v for k, v in data.items() if k not in ("batch_size", "num_workers", "seed", "seconds")}
    if isinstance(options.get("level_db"), list):
        options["level_db"] = tuple(options["level_db"])
    return CleanSpeech(split=split, seconds=seconds, length=length, seed=seed, **options)


def dev_examples(config: dict, split: str) -> torch.Tensor:
    """The fixed clean dev clips of ``split``, ``[N, 1, T]``: the same every run. Their levels are the training
    data's unless ``dev`` pins its own ``level_db`` (a config that trains on other levels keeps the dev set of
    earlier runs, so its scores stay comparable)."""
    dev = config["dev"]
    data = {k: v for k, v in config["data"].items() if k in ("level_db", "root")}
    if "level_db" in dev:
        data["level_db"] = dev["level_db"]
    ds = dataset(data, split, dev["items"], dev["seconds"], dev["seed"])
    return torch.stack([ds[i] for i in range(dev["items"])])


def evaluate_on(model: SpectralCodec, clean: torch.Tensor, prefix: str, mel: MultiScaleMelLoss,
                batch: int = 8, pesq: bool = False, stoi: bool = False) -> dict[str, float]:
    """Mel distance (dB) and SI-SDR of the decoded clips at each of the model's bitrates, with ``pesq``
    their PESQ-WB (the harness's, ~0.02 s a 3 s clip), with ``stoi`` their STOI (the harness's)."""
    (clean,) = crop_to_hop(clean, hop=model.hop)
    latents = torch.cat([model.encoder(clean[i:i + batch]) for i in range(0, len(clean), batch)])
    metrics = {}
    for bitrate in model.bitrates:
        codes = model.quantizer.encode(latents, model.n_q_for(bitrate))
        decoded = torch.cat([model.decoder(model.quantizer.decode(codes[i:i + batch]))
                             for i in range(0, len(codes), batch)])
        out, ref = aligned(decoded, clean, model.latency)
        metrics[f"{prefix}_mel_db_{bitrate:g}k"] = mel.distance_db(out, ref).mean().item()
        metrics[f"{prefix}_si_sdr_{bitrate:g}k"] = si_sdr(out, ref).mean().item()
        if pesq:
            metrics[f"{prefix}_pesq_{bitrate:g}k"] = waveform.mean_pesq(out, ref)
        if stoi:
            metrics[f"{prefix}_stoi_{bitrate:g}k"] = waveform.mean_stoi(out, ref)
    return metrics


def training_loss(model: RVQCodec, batch: torch.Tensor, criterion: CodecLoss, adversary: Adversary | None = None,
                  step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """The recipe's loss on a batch of clean clips ``[B, 1, T]``, each example at one of the bitrates;
    with an ``adversary``, its discriminator takes its step and its terms are added."""
    (clean,) = crop_to_hop(batch, hop=model.frame_size)
    quantized = model.quantizer.quantize(model.encoder(clean))
    if criterion.needs_spectrum:  # decoder frame k predicts the encoder's STFT frame k
        if model.decoder.subframes > 1 or model.decoder.istft.n_fft != model.encoder.stft.n_fft:
            raise ValueError("the spectrum terms compare the decoder's frames with the encoder's: they need the "
                             "decoder to synthesize in the encoder's frames")
        decoded, spectrum = model.decoder.forward_with_spectrum(quantized.latents)
        output, target = aligned(decoded, clean, model.latency)
        loss, stats = criterion(output, target, quantized.commitment, spectrum, model.encoder.stft(clean))
    else:
        output, target = aligned(model.decoder(quantized.latents), clean, model.latency)
        loss, stats = criterion(output, target, quantized.commitment)
    if adversary is not None:
        adversarial, adversarial_stats = adversary(step, output, target)
        loss, stats = loss + adversarial, {**stats, **adversarial_stats}
    return loss, stats


def build_model(config: dict) -> SpectralCodec:
    return SpectralCodec(**config["model"])


def train(config: dict, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    loop = LoopConfig.from_dict(config["train"])
    torch.manual_seed(loop.seed)  # the same initial weights for the same seed
    model = build_model(config)
    data = config["data"]
    batch_size, seconds = data["batch_size"], data["seconds"]
    train_set = dataset(data, "train", loop.steps * batch_size, seconds, data.get("seed", 0))
    dev_sets = {DEV_SPLITS[split]: dev_examples(config, split) for split in config["dev"].get("splits", DEV_SPLITS)}
    criterion = build_loss(config, model)
    adversary = Adversary(config["adversarial"], model.sample_rate) if "adversarial" in config else None
    init = config.get("init")
    if init and not (resume and (Path(out) / "last.json").exists()):  # a resumed run has its weights already
        frames = int(seconds * model.sample_rate) // model.frame_size
        init = str(warm_start(model, init, batch_size * frames))

    def batches(start: int) -> Iterator[tuple[int, torch.Tensor]]:
        # the step goes with its batch: the adversary starts at a given step, also in a resumed run
        return enumerate(step_batches(train_set, batch_size, start, loop.steps, data.get("num_workers", 0)), start)

    def loss_fn(model: SpectralCodec, item: tuple[int, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        step, batch = item
        return training_loss(model, batch, criterion, adversary, step)

    score = config["dev"].get("score", "mel_db")
    if score not in DEV_SCORES:
        raise ValueError(f"unknown dev score {score!r}; choose one of {DEV_SCORES}")
    pesq = bool(config["dev"].get("pesq", False)) or score == "pesq"
    stoi = bool(config["dev"].get("stoi", False))

    def evaluate(model: SpectralCodec) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, clean in dev_sets.items():
            metrics.update(evaluate_on(model, clean, name, criterion.mel, pesq=pesq, stoi=stoi))
        values = [v for k, v in metrics.items() if f"_{score}_" in k]
        metrics[METRIC] = (-1 if score == "mel_db" else 1) * sum(values) / len(values)
        return metrics

    companions = {"discriminator": (adversary.discriminator, adversary.optimizer)} if adversary else None
    return fit(model, loss_fn, batches, evaluate, loop, Path(out), METRIC, resume=resume,
               run_info={"config": config, "corpora": waveform.run_corpora(config, CORPUS_KINDS), "init": init},
               progress=progress, companions=companions)


def export(run: str | Path, weights_dir: str | Path = WEIGHTS_DIR, data_root: str | Path | None = None,
           checkpoint: str = BEST) -> Path:
    """Write the best checkpoint of ``run`` (or ``checkpoint="last"``) as ``{weights_dir}/codec.safetensors``
    + ``codec.json``: the quantizer's EMA statistics left out (inference does not read them), keeping the
    fields of an existing card that training does not produce (evaluation, prose)."""
    run, weights_dir = Path(run), Path(weights_dir)
    model, meta, last, card = export_checkpoint(run, weights_dir, build_model, NAME, checkpoint)
    save_file({k: v.float().contiguous() for k, v in inference_state_dict(model).items()},
              str(weights_dir / f"{NAME}.safetensors"))
    config = meta["run"]["config"]
    size = (weights_dir / f"{NAME}.safetensors").stat().st_size
    card.update({
        "name": NAME,
        "task": "codec",
        "description": "Streaming speech codec at 16 kHz: 1.5, 3 or 6 kbps per stream from one model, "
                       f"{1000 * model.algorithmic_latency / model.sample_rate:g} ms algorithmic latency.",
        "architecture": {
            "class": "wavestream.models.codec.SpectralCodec",
            "family": "FreqCodec (FunCodec): STFT in, causal conv encoder, residual vector quantizer with quantizer "
                      "dropout (SoundStream / EnCodec), conv + GRU decoder, inverse STFT out",
            "summary": f"causal STFT ({model.encoder.stft.n_fft}-sample window, {model.frame_size}-sample hop) -> "
                       "compressed complex spectrum -> causal convs -> RVQ of "
                       f"{model.codebooks} x {model.codebook_size} codebooks (EMA, dead-code restarts) -> causal "
                       "convs + skip GRU -> "
                       + ("log magnitude per bin, phase from a causal phase vocoder (identity phase locking)"
                          if model.decoder.phase == "vocoder" else "log magnitude and phase per bin")
                       + f" -> inverse STFT ({model.decoder.istft.n_fft}-sample window, "
                         f"{model.decoder.istft.hop_length}-sample hop: {model.decoder.subframes} a code frame)",
            "parameters": sum(p.numel() for p in model.parameters()),
            "sample_rate": model.sample_rate,
            "frame_rate": model.frame_rate,
            "codebooks": model.codebooks,
            "codebook_size": model.codebook_size,
            "bitrates_kbps": {f"{b:g}": model.n_q_for(b) for b in model.bitrates},
            "latency_samples": model.algorithmic_latency,
            "latency_ms": 1000 * model.algorithmic_latency / model.sample_rate,
        },
        "config": config["model"],
        "weights": {"format": "safetensors", "dtype": "float32", "file": f"{NAME}.safetensors", "bytes": size,
                    "note": "no EMA codebook statistics (inference does not read them)"},
        "data": waveform.card_data(last, config, CORPUS_KINDS, data_root),
        "training": {
            **waveform.training_section(NAME, config, meta, last, config["loss"]),
            **({"adversarial": {**ADVERSARIAL_DEFAULTS, **config["adversarial"]}} if "adversarial" in config else {}),
            **({"init": meta["run"].get("init") or config["init"]} if config.get("init") else {}),
            "dev_history": [{k: round(v, 3) for k, v in h.items()
                             if k == "step" or "mel_db" in k or "_pesq_" in k or "_stoi_" in k or k == METRIC}
                            for h in last.get("history", [])],
        },
        "dev": {"set": f"{config['dev']['items']} clean CleanSpeech clips x {config['dev']['seconds']} s from each "
                       f"of the splits {list(config['dev'].get('splits', DEV_SPLITS))} (dev: held-out talkers; ood: a "
                       f"corpus never trained on), seed {config['dev']['seed']}, coded at every bitrate; checkpoint "
                       f"chosen by {METRIC} = "
                       + ("the mean PESQ-WB" if config["dev"].get("score") == "pesq"
                          else "minus the mean log-mel distance in dB"),
                **{k: round(v, 3) for k, v in meta["metrics"].items()}},
    })
    card.setdefault("metrics", {})
    card_path = weights_dir / f"{NAME}.json"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def record_evaluation(results: str | Path, weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Copy `wavestream eval codec --model codec` results (ours and the peers') into the card."""
    return waveform.record_evaluation(results, NAME, Path(weights_dir) / f"{NAME}.json", None)


def add_arguments(parser) -> None:
    waveform.add_arguments(parser, NAME, DEFAULT_CONFIG)


def run(args) -> int:
    return waveform.run(args, sys.modules[__name__])
