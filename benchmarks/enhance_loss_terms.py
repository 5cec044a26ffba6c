"""Each term of the enhance loss on one real training batch, with the gradient norm it puts on the model's
parameters: the numbers to weigh a new term against the others (issue 11's compressed-spectrum loss).

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/enhance_loss_terms.py \\
        [--weights wavestream/models/weights/enhance.safetensors] \\
        [--config wavestream/train/configs/enhance-pesq.json] \\
        [--batch 4] [--start 0] [--loss '{"compressed": {"normalize": false}}']

The batch is NoisySpeech training examples ``start .. start + batch - 1`` of the config's data settings (the
examples a run from step 0 draws first, at batch size ``--batch``). Prints, per term, its value, its gradient
norm unweighted, and weighted as the config's ``loss`` weighs it; then the compressed terms per example.
"""

from __future__ import annotations

import argparse
import json

import torch
from safetensors.torch import load_file

from wavestream.models.registry import WEIGHTS_DIR
from wavestream.train import enhance as recipe
from wavestream.train.loop import load_config
from wavestream.train.losses import CompressedSpectrumLoss, MultiResolutionSTFTLoss, si_sdr
from wavestream.train.waveform import aligned, crop_to_hop


def grad_norm(value: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(WEIGHTS_DIR / "enhance.safetensors"))
    ap.add_argument("--config", default=str(recipe.DEFAULT_CONFIG.parent / "enhance-pesq.json"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--loss", default=None, metavar="JSON",
                    help='override loss settings, e.g. \'{"compressed_weight": 20, "compressed": {"power": 0.5}}\'')
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config, recipe.SECTIONS)
    config["loss"] |= json.loads(args.loss or "{}")
    data, loss = config["data"], config["loss"]
    model = recipe.build_model(config)
    model.load_state_dict(load_file(args.weights))
    params = [p for p in model.parameters() if p.requires_grad]
    ds = recipe._dataset(data, "train", args.start + args.batch, data["seconds"], data.get("seed", 0))
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
    }
    print(f"\n{'term':34s} {'value':>9s} {'|grad|':>9s} {'weight':>7s} {'w*value':>9s} {'w*|grad|':>9s}")
    total = 0
    for name, (value, weight) in terms.items():
        g = grad_norm(value, params)
        if not name.startswith("  "):
            total = total + weight * value
        print(f"{name:34s} {value.item():9.4f} {g:9.4f} {weight:7.3g} {weight * value.item():9.4f} {weight * g:9.4f}")
    print(f"{'total (the config loss)':34s} {total.item():9.4f} {grad_norm(total, params):9.4f}")
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
