"""The pilot that chose the codec's architecture: how fast each candidate fits one batch of clean speech.

Both candidates get the same fixed batch (``--batch`` clips of ``--seconds`` from the training split,
the recipe's level range), the recipe's loss (``wavestream.train.codec.CodecLoss``: multi-scale mel,
multi-resolution STFT, waveform L1, commitment, with quantizer dropout) and the same optimizer; printed
every 20 steps: the loss terms and the seconds a step on one thread. A candidate that cannot fit one
batch quickly will not learn the corpus in the time two cores give a training run.

- ``seanet``: the SoundStream / EnCodec waveform codec (``EncodecStreaming``) at the speech codec's size:
  16 kHz, strides 2, 4, 5, 8 (320 samples a frame), 12 base filters, 64-dim latents, 12 x 1024 codebooks,
  a skip LSTM in the decoder only, weight norm;
- ``spectral``: the shipped ``SpectralCodec`` (the recipe's config).

    python benchmarks/codec_pilot.py [--steps 100] [--batch 8] [--seconds 1] [--candidates seanet,spectral]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from wavestream.evaluate.harness import machine_load
from wavestream.models.codec import BITRATES, SpectralCodec
from wavestream.models.encodec import EncodecStreaming
from wavestream.train.codec import DEFAULT_CONFIG, CodecLoss, dataset, training_loss


def seanet() -> EncodecStreaming:
    return EncodecStreaming(bitrate=3.0, dimension=64, n_filters=12, lstm_layers=1, encoder_lstm_layers=0, n_q=12,
                            sample_rate=16000, bitrates=BITRATES, weight_norm=True, dead_code_threshold=0.1)


def spectral(config: dict) -> SpectralCodec:
    return SpectralCodec(**config["model"])


def fit(model, batch: torch.Tensor, criterion: CodecLoss, steps: int, lr: float) -> None:
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        loss, terms = training_loss(model, batch, criterion)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if step % 20 == 0 or step == steps:
            seconds = (time.perf_counter() - start) / step
            print(f"  step {step}: loss {loss.item():.3f} " + " ".join(f"{k} {v:.3f}" for k, v in terms.items())
                  + f" ({seconds:.2f} s/step)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--candidates", default="seanet,spectral")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = json.loads(DEFAULT_CONFIG.read_text())
    data = dataset(config["data"], "train", args.batch, args.seconds, seed=0)
    batch = torch.stack([data[i] for i in range(args.batch)])
    criterion = CodecLoss(16000, **config["loss"])
    print(f"one batch of {args.batch} x {args.seconds:g} s, {args.steps} steps, lr {args.lr:g}, one thread; "
          f"{machine_load()}")
    for name in args.candidates.split(","):
        torch.manual_seed(0)
        model = seanet() if name == "seanet" else spectral(config)
        print(f"{name}: {sum(p.numel() for p in model.parameters()):,} weights")
        fit(model, batch, criterion, args.steps, args.lr)


if __name__ == "__main__":
    main()
