"""The streaming-module contract (docs/design.md, "The streaming contract").

A ``StreamingModule`` is explicitly stateful: ``init_state`` builds a flat state dict, ``step``
maps ``(x, state) -> (y, new_state)`` without mutating its inputs, and ``forward(x)`` is exactly
``step(x, init_state(B))`` so offline inference is the streaming code path from a zero state.

Time is always the last dimension. ``step`` accepts any length that is a multiple of ``hop``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import torch
from torch import nn

from .state import State, prefixed

AUDIO, SOURCES, TOKENS, EVENTS, FEATURES = "audio", "sources", "tokens", "events", "features"
_NO_ENTRIES: dict = {}  # step_child's table before its first entry


class StreamingModule(nn.Module):
    #: model sample rate in Hz (None for layers that do not care)
    sample_rate: int | None = None
    #: input time steps per step unit; ``step`` inputs must be a multiple of this
    hop: int = 1
    #: algorithmic latency in input time steps: output at t depends on input up to t + latency
    latency: int = 0
    #: output time steps per input time step: 1/stride for a downsampler (an STFT: 1/hop samples),
    #: the stride for an upsampler (a transposed conv, an inverse STFT)
    out_per_in: Fraction = Fraction(1)
    input_kind: str = FEATURES
    output_kind: str = FEATURES

    @property
    def algorithmic_latency(self) -> int:
        """Input time steps from an input sample's arrival until its output can leave: the framing
        (a whole hop must arrive) plus ``latency`` (window and look-ahead). The one rule for every
        latency figure we state, ours and the peers' (e.g. a 512/256 STFT model: 512 = 32 ms at 16 kHz)."""
        return self.hop + self.latency

    def init_state(self, batch: int = 1, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """Zero state for ``batch`` streams: this module's own entries plus its children's."""
        dtype = dtype or torch.float32
        state = self.own_state(batch, device, dtype)
        for name, child in self.streaming_children():
            state.update(prefixed(child.init_state(batch, device, dtype), name))
        return state

    def own_state(self, batch: int, device: torch.device | str | None, dtype: torch.dtype) -> State:
        """State entries that belong to this module itself (not its streaming children)."""
        return {}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, self.init_state(x.shape[0], x.device, x.dtype))[0]

    # -- helpers for composite modules -------------------------------------------------------
    def streaming_children(self, prefix: str = "") -> Iterator[tuple[str, StreamingModule]]:
        """The nearest StreamingModule descendants (looking through plain containers)."""
        for name, child in self.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, StreamingModule):
                yield path, child
            else:
                yield from StreamingModule.streaming_children(child, path + ".")  # type: ignore[arg-type]

    def step_child(self, name: str, x: torch.Tensor, state: State, new_state: State) -> torch.Tensor:
        """Step the child at dotted path ``name`` with its slice of ``state``; record its new state."""
        # per step, a model calls this once per layer (~1 us of Python each, a good part of a 10 ms step of a
        # small model): the path's parts, the child and its keys come from a table made on first use; the
        # walk down the module dicts stays (a replaced child gets a new entry), a stateless child costs no dicts
        entry = self.__dict__.get("_child_state_keys", _NO_ENTRIES).get(name)
        child = self
        for part in entry[0] if entry is not None else name.split("."):
            child = child._modules[part]
        if entry is None or entry[1] is not child:
            entry = self._child_entry(name, child)
        _, _, keys, pairs = entry
        y, s = child.step(x, {k: state[full] for k, full in pairs} if pairs else {})
        for k, v in s.items():
            new_state[keys.get(k) or f"{name}.{k}"] = v
        return y

    def _child_keys(self, name: str, child: StreamingModule) -> dict[str, str]:
        """The child's state keys -> the keys in this module's state (kept while ``name`` is that child)."""
        entry = self.__dict__.get("_child_state_keys", _NO_ENTRIES).get(name)
        return (entry if entry is not None and entry[1] is child else self._child_entry(name, child))[2]

    def _child_entry(self, name: str, child: StreamingModule) -> tuple:
        """(path parts, child, its keys -> ours, the same as pairs), made once per child at ``name``."""
        keys = {k: f"{name}.{k}" for k in child.init_state(1)}
        entry = (tuple(name.split(".")), child, keys, tuple(keys.items()))
        self.__dict__.setdefault("_child_state_keys", {})[name] = entry
        return entry

    def check_length(self, x: torch.Tensor) -> None:
        if x.shape[-1] % self.hop:
            raise ValueError(f"{type(self).__name__}.step needs a multiple of hop={self.hop} time steps, "
                             f"got {x.shape[-1]}")


class StreamingSequential(StreamingModule):
    """Streaming modules applied in order; hop and latency compose along the chain."""

    def __init__(self, *layers: StreamingModule):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        hop, latency, scale = 1, 0, Fraction(1)  # scale: model input steps per time step at this layer
        for layer in layers:
            # a layer needs a multiple of `layer.hop` of its own input steps, i.e. of layer.hop * scale
            # model inputs; the smallest whole number of model inputs that is such a multiple:
            need = (layer.hop * scale).numerator
            hop = math.lcm(hop, need)
            latency += layer.latency * scale
            scale /= Fraction(layer.out_per_in)
        self.hop, self.latency = hop, math.ceil(latency)
        self.out_per_in = 1 / scale
        self.sample_rate = layers[0].sample_rate if layers else None

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_length(x)
        new_state: State = {}
        for i in range(len(self.layers)):
            x = self.step_child(f"layers.{i}", x, state, new_state)
        return x, new_state

