"""Convert official EnCodec 24 kHz checkpoints to our ``encodec_24khz`` safetensors.

Two source layouts are read (detected from the keys):
- the ``encodec`` package (``encodec_24khz-d7cc33bc.th``): ``encoder.model.{i}.conv.conv.weight_g`` ...,
  ``quantizer.vq.layers.{q}._codebook.embed``;
- ``transformers``' ``EncodecModel`` (``facebook/encodec_24khz``, ``model.safetensors``):
  ``encoder.layers.{i}.conv.weight_g`` (or ``...conv.parametrizations.weight.original0`` when saved by
  a recent version), ``quantizer.layers.{q}.codebook.embed``.

Both number the SEANet layers the same way (a flat list in which ELUs take an index too); weight
norm (``g``, ``v``) is folded into one weight with torch's own ``_weight_norm``, so the converted
convs compute exactly what the official ones do. The 32 codebooks are stacked into one buffer.

    python -m wavestream.models.convert_encodec encodec_24khz-d7cc33bc.th encodec_24khz.safetensors
    wavestream serve --weights ...   (see docs/models.md)

``.th`` / ``.bin`` files are pickles: they are read with ``torch.load(weights_only=True)``, which
unpickles tensors only; our output is safetensors.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .encodec import EncodecStreaming

_LAYER = re.compile(r"^(encoder|decoder)\.(model|layers)\.(\d+)\.(.+)$")
_CODEBOOK = re.compile(r"^quantizer\.(?:vq\.layers\.(\d+)\._codebook|layers\.(\d+)\.codebook)\.(\w+)$")
# official parameter suffixes -> (role, our name): weight-norm halves are folded later
_SUFFIXES = {"weight_g": "g", "weight_v": "v", "parametrizations.weight.original0": "g",
             "parametrizations.weight.original1": "v", "weight": "weight", "bias": "bias"}


def layer_map(model: EncodecStreaming) -> dict[tuple[str, int], tuple[str, str]]:
    """Official ``(part, flat index)`` -> ``(our module path, kind)`` with kind conv | convtr | unit | lstm.

    Mirrors how SEANet lists its layers: encoder = input conv, per stage (units, ELU, downsampling
    conv), LSTM, ELU, output conv; decoder = input conv, LSTM, per stage (ELU, upsampling transposed
    conv, units), ELU, output conv.
    """
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for part, net in (("encoder", model.encoder), ("decoder", model.decoder)):
        index = 0

        def add(path: str, kind: str, part=part) -> None:
            nonlocal index
            out[(part, index)] = (f"{part}.{path}", kind)
            index += 1

        add("input_conv", "conv")
        if part == "decoder" and net.lstm is not None:
            add("lstm", "lstm")
        for i, units in enumerate(net.units):
            if part == "encoder":
                for j in range(len(units)):
                    add(f"units.{i}.{j}", "unit")
                index += 1  # ELU
                add(f"downsample.{i}", "conv")
            else:
                index += 1  # ELU
                add(f"upsample.{i}", "convtr")
                for j in range(len(units)):
                    add(f"units.{i}.{j}", "unit")
        if part == "encoder" and net.lstm is not None:
            add("lstm", "lstm")
        index += 1  # ELU
        add("output_conv", "conv")
    return out


def _target(path: str, kind: str, rest: str) -> tuple[str, str]:
    """Our parameter (without the suffix) and the official suffix for one official key's remainder."""
    rest = rest.replace("conv.conv.", "conv.").replace("convtr.convtr.", "conv.")  # encodec package wrappers
    if kind == "lstm":
        if not rest.startswith("lstm."):
            raise KeyError(rest)
        return f"{path}.lstm.rnn", rest[len("lstm."):]
    if kind == "unit":
        inner = {"block.1.conv.": "conv1.conv", "block.3.conv.": "conv2.conv", "shortcut.conv.": "shortcut.conv"}
        for prefix, ours in inner.items():
            if rest.startswith(prefix):
                return f"{path}.{ours}", rest[len(prefix):]
        raise KeyError(rest)
    if not rest.startswith("conv."):
        raise KeyError(rest)
    return f"{path}.{'convtr' if kind == 'convtr' else 'conv'}", rest[len("conv."):]


def convert_state_dict(official: Mapping[str, torch.Tensor], model: EncodecStreaming | None = None) -> dict:
    """An official EnCodec 24 kHz state dict (either layout) -> our ``encodec_24khz`` state dict."""
    model = model or EncodecStreaming()
    layers = layer_map(model)
    params: dict[str, dict[str, torch.Tensor]] = {}
    codebooks: dict[str, dict[int, torch.Tensor]] = {}
    ignored = []
    for key, value in official.items():
        if m := _CODEBOOK.match(key):
            q = int(m.group(1) if m.group(1) is not None else m.group(2))
            codebooks.setdefault(m.group(3), {})[q] = value
            continue
        m = _LAYER.match(key)
        if m is None or (m.group(1), int(m.group(3))) not in layers:
            ignored.append(key)
            continue
        path, kind = layers[(m.group(1), int(m.group(3)))]
        try:
            module, suffix = _target(path, kind, m.group(4))
        except KeyError:
            raise ValueError(f"unexpected official key {key!r}") from None
        role = suffix if kind == "lstm" else _SUFFIXES.get(suffix)
        if role is None:
            raise ValueError(f"unexpected official key {key!r}")
        params.setdefault(module, {})[role] = value
    if ignored:
        raise ValueError(f"keys that are not part of EnCodec 24 kHz: {ignored[:5]}{' ...' if len(ignored) > 5 else ''}")
    ours: dict[str, torch.Tensor] = {}
    for module, parts in params.items():
        if "g" in parts or "v" in parts:
            # weight norm over every dim but 0, for Conv1d and ConvTranspose1d alike (torch's default)
            parts["weight"] = torch._weight_norm(parts.pop("v"), parts.pop("g"), 0)
        for role, value in parts.items():
            ours[f"{module}.{role}"] = value.detach().float().contiguous()
    n_q = model.codebooks
    for name in ("embed", "embed_avg", "cluster_size"):
        found = codebooks.get(name, {})
        if sorted(found) != list(range(n_q)):
            raise ValueError(f"expected {n_q} codebooks of {name!r}, found {len(found)}")
        ours[f"quantizer.{name}"] = torch.stack([found[q].float() for q in range(n_q)]).contiguous()
    inited = codebooks.get("inited", {})
    ours["quantizer.initialized"] = torch.tensor(all(bool(v.all()) for v in inited.values()) if inited else True)
    expected = set(model.state_dict())
    if set(ours) != expected:
        missing, extra = sorted(expected - set(ours)), sorted(set(ours) - expected)
        raise ValueError(f"conversion does not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
    model.load_state_dict(ours)  # shapes checked here
    return ours


def load_official(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official checkpoint: ``.safetensors``, or a torch pickle read with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    return state


def convert_file(source: str | Path, target: str | Path) -> dict[str, torch.Tensor]:
    ours = convert_state_dict(load_official(source))
    save_file(ours, str(target), metadata={"source": Path(source).name, "model": "encodec_24khz"})
    return ours


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="convert an official EnCodec 24 kHz checkpoint "
                                                 "(encodec package .th or transformers safetensors/.bin)")
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path, help="output .safetensors for `--weights`")
    args = parser.parse_args(argv)
    ours = convert_file(args.source, args.target)
    print(f"wrote {args.target} ({len(ours)} tensors); serve it with the model encodec_24khz and --weights")


if __name__ == "__main__":
    main()
