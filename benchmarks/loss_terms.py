"""Each term of a recipe's loss on one real training batch, with the gradient norm it puts on the model's
parameters: the numbers to weigh a new term against the others (issue 11's compressed-spectrum and
STOI-shaped losses for ``enhance``; issue 9's phase terms for ``codec``).

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/loss_terms.py \\
        [--recipe enhance|codec] [--weights PATH] [--config PATH] \\
        [--batch 4] [--start 0] [--loss '{"compressed": {"normalize": false}}']

enhance (the default; weights ``enhance.safetensors``, config ``enhance-pesq.json``): the batch is NoisySpeech
training examples ``start .. start + batch - 1`` of the config's data settings (the examples a run from step 0
draws first, at batch size ``--batch``). Prints, per term, its value, its gradient norm unweighted, and
weighted as the config's ``loss`` weighs it; then the compressed terms per example.

codec (weights ``codec.safetensors``, loaded as the recipe's ``init`` loads them; config ``codec-phase.json``):
the batch is CleanSpeech training examples, coded as in training (quantizer dropout: each example at one of
the bitrates, drawn with torch seed 0); the terms are ``CodecLoss.terms``, including those on the decoder's
complex spectrum; then per example its level, bitrate and spectrum terms, and how far the decoder's bins sit
above the reference's (median, dB) and how much of its spectrum's energy the overlap-add cancels (dB).
"""

from __future__ import annotations

import argparse
import json

import torch
from safetensors.torch import load_file

from wavestream.models.registry import WEIGHTS_DIR
from wavestream.train import enhance as recipe
from wavestream.train.loop import load_config
from wavestream.train.losses import CompressedSpectrumLoss, IntelligibilityLoss, MultiResolutionSTFTLoss, si_sdr
from wavestream.train.waveform import aligned, crop_to_hop


def grad_norm(value: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None)))


def print_terms(terms: dict[str, tuple[torch.Tensor, float]], params: list[torch.Tensor]) -> torch.Tensor:
    """The table of terms (name: (value, weight); names starting with two spaces are parts of the term above,
    left out of the total); returns the total."""
    print(f"\n{'term':34s} {'value':>9s} {'|grad|':>9s} {'weight':>7s} {'w*value':>9s} {'w*|grad|':>9s}")
    total = 0
    for name, (value, weight) in terms.items():
        g = grad_norm(value, params)
        if not name.startswith("  "):
            total = total + weight * value
        print(f"{name:34s} {value.item():9.4f} {g:9.4f} {weight:7.3g} {weight * value.item():9.4f} {weight * g:9.4f}")
    print(f"{'total (the config loss)':34s} {total.item():9.4f} {grad_norm(total, params):9.4f}")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=("enhance", "codec"), default="enhance")
    ap.add_argument("--weights", help="default: the recipe's shipped weights")
    ap.add_argument("--config", help="default: enhance-pesq.json or codec-phase.json")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--loss", default=None, metavar="JSON",
                    help='override loss settings, e.g. \'{"compressed_weight": 20, "compressed": {"power": 0.5}}\'')
    args = ap.parse_args()
    torch.set_num_threads(1)
    (codec_terms if args.recipe == "codec" else enhance_terms)(args)


def codec_terms(args) -> None:
    from wavestream.train import codec

    config = load_config(args.config or codec.DEFAULT_CONFIG.parent / "codec-phase.json", codec.SECTIONS)
    config["loss"] |= json.loads(args.loss or "{}")
    data = config["data"]
    torch.manual_seed(0)
    model = codec.build_model(config)
    frames = int(data["seconds"] * model.sample_rate) // model.frame_size
    codec.warm_start(model, args.weights or WEIGHTS_DIR / "codec.safetensors", data["batch_size"] * frames)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    ds = codec.dataset(data, "train", args.start + args.batch, data["seconds"], data.get("seed", 0))
    (clean,) = crop_to_hop(torch.stack([ds[i] for i in range(args.start, args.start + args.batch)]),
                           hop=model.frame_size)
    quantized = model.quantizer.quantize(model.encoder(clean))
    decoded, spectrum = model.decoder.forward_with_spectrum(quantized.latents)
    reference = model.encoder.stft(clean)
    output, target = codec.aligned(decoded, clean, model.latency)
    levels = 20 * torch.log10(target.pow(2).mean(-1).sqrt().flatten())
    print(f"{args.batch} training examples from {args.start}: level {[round(v, 1) for v in levels.tolist()]} dBFS")

    criterion = codec.build_loss(config, model)
    # the optional terms with weight 0 in the config are measured too (at weight 0)
    loss = config["loss"]
    measure = codec.CodecLoss(model.sample_rate, **{**loss, **{f"{k}_weight": loss.get(f"{k}_weight") or 1.0
                                                             for k in ("consistency", "compressed")}},
                              frames=(model.decoder.istft.n_fft, model.decoder.istft.hop_length))
    values = measure.terms(output, target, quantized.commitment, spectrum, reference)
    terms = {name: (value, criterion.weights.get(name, 0.0)) for name, value in values.items()}
    complex_mse, magnitude_mse = measure.compressed.terms(output, target)
    mix = measure.compressed.complex_weight
    terms["  compressed: its complex MSE"] = (complex_mse, criterion.weights.get("compressed", 0.0) * mix)
    terms["  compressed: its magnitude MSE"] = (magnitude_mse, criterion.weights.get("compressed", 0.0) * (1 - mix))
    total = print_terms(terms, params)
    check, _ = criterion(output, target, quantized.commitment, spectrum, reference)
    assert torch.allclose(check, total, rtol=1e-5), (check, total)

    bitrates = {model.n_q_for(b): b for b in model.bitrates}
    n_q = getattr(quantized, "n_q", None)
    print("\nper example: level, bitrate, consistency, spectrum magnitude, compressed; decoder bins over the "
          "reference's (median dB, frames within 40 dB of the loudest); decoder energy over its output's (dB)")
    with torch.no_grad():
        again = measure.consistency.reanalysed(spectrum)
        for i in range(args.batch):
            s, r = spectrum[i:i + 1], reference[i:i + 1]
            frame_db = 10 * torch.log10(r[0, 0].abs().square().sum(0) + 1e-20)
            active = frame_db > frame_db.max() - 40
            over = (20 * torch.log10(s[0, 0][:, active].abs() + 1e-7)
                    - 20 * torch.log10(r[0, 0][:, active].abs() + 1e-7)).median()
            cancel = 10 * torch.log10(s[..., :-1].abs().square().sum() / again[i].abs().square().sum())
            rate = f"{bitrates.get(int(n_q[i]), '?')}k" if n_q is not None else "?"
            print(f"  {i}: level {levels[i]:6.1f} dBFS  {rate:>5s}  consistency "
                  f"{measure.consistency(s, r).item():.4f}  spectrum {measure.spectrum(s, r).item():.4f}  "
                  f"compressed {measure.compressed(output[i:i + 1], target[i:i + 1]).item():.4f}  "
                  f"bins {over.item():+5.1f} dB  cancelled {cancel.item():+5.1f} dB")


def enhance_terms(args) -> None:
    config = load_config(args.config or recipe.DEFAULT_CONFIG.parent / "enhance-pesq.json", recipe.SECTIONS)
    config["loss"] |= json.loads(args.loss or "{}")
    data, loss = config["data"], config["loss"]
    model = recipe.build_model(config)
    model.load_state_dict(load_file(args.weights or str(WEIGHTS_DIR / "enhance.safetensors")))
    params = [p for p in model.parameters() if p.requires_grad]
    ds = recipe.dataset(data, "train", args.start + args.batch, data["seconds"], data.get("seed", 0))
    pairs = [ds[i] for i in range(args.start, args.start + args.batch)]
    noisy, clean = crop_to_hop(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), hop=model.hop)
    output, target = aligned(model(noisy), clean, model.latency)
    levels = 20 * torch.log10(target.pow(2).mean(-1).sqrt().flatten())
    snrs = 10 * torch.log10(clean.pow(2).sum(-1) / (noisy - clean).pow(2).sum(-1)).flatten()
    print(f"{args.batch} training examples from {args.start}: clean level {[round(v, 1) for v in levels.tolist()]} "
          f"dBFS, SNR {[round(v, 1) for v in snrs.tolist()]} dB; input SI-SDR "
          f"{si_sdr(noisy, clean).mean():.2f} dB")

    stft = MultiResolutionSTFTLoss([tuple(r) for r in loss.get("resolutions", ((512, 128), (1024, 256), (256, 64)))])
    options = loss.get("compressed") or {}
    compressed = CompressedSpectrumLoss(**options)
    complex_mse, magnitude_mse = compressed.terms(output, target)
    mix = compressed.complex_weight
    terms = {  # name: (value, weight in the config)
        "-si_sdr (dB)": (-si_sdr(output, target).mean(), loss.get("sisdr_weight", 0.1)),
        "stft (SC + log mag)": (stft(output, target), loss.get("stft_weight", 1.0)),
        f"compressed ({mix:g} complex + {1 - mix:g} mag)": (compressed(output, target),
                                                           loss.get("compressed_weight", 0.0)),
        "  its complex MSE": (complex_mse, loss.get("compressed_weight", 0.0) * mix),
        "  its magnitude MSE": (magnitude_mse, loss.get("compressed_weight", 0.0) * (1 - mix)),
        "1 - STOI-shaped score": (IntelligibilityLoss(**(loss.get("stoi") or {}))(output, target),
                                  loss.get("stoi_weight", 0.0)),
    }
    total = print_terms(terms, params)
    criterion = recipe.EnhanceLoss(**loss)
    check, logged = criterion(output, target)
    assert torch.allclose(check, total, rtol=1e-5), (check, total)

    print(f"\nper example ({options or 'defaults'}):")
    for i in range(args.batch):
        c, m = compressed.terms(output[i:i + 1], target[i:i + 1])
        print(f"  {i}: level {levels[i]:6.1f} dBFS  complex {c.item():.4f}  magnitude {m.item():.4f}  "
              f"SI-SDR {si_sdr(output[i], target[i]).item():6.2f} dB")


if __name__ == "__main__":
    main()
