"""Small real streaming models for the engine tests, built from wavestream.streaming layers.

They cover every output kind and the failure path; ``registered_test_models`` puts them in the
registry under ``test-*`` names so that the engine and the CLI load them like any other model.
"""

from __future__ import annotations

from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import torch

from wavestream.models.registry import _REGISTRY, register
from wavestream.streaming.conv import CausalConv1d
from wavestream.streaming.module import AUDIO, EVENTS, SOURCES, TOKENS, StreamingModule

RATE, HOP, DELAY = 16000, 160, 40


class _Base(StreamingModule):
    sample_rate, hop, latency, input_kind, output_kind = RATE, HOP, DELAY, AUDIO, AUDIO


class FilterModel(_Base):
    """Causal conv -> tanh -> causal conv with random weights (seeded); ``gain`` is a stream param."""

    stream_params = ("gain",)

    def __init__(self, seed: int = 0, gain: float = 1.0):
        super().__init__()
        if not isinstance(gain, int | float) or not 0 < gain <= 10:
            raise ValueError(f"gain must be a number in (0, 10], got {gain!r}")
        torch.manual_seed(seed)
        self.inner = CausalConv1d(1, 8, 33)
        self.outer = CausalConv1d(8, 1, 32)
        self.gain = float(gain)

    def step(self, x, state):
        self.check_length(x)
        new = {}
        h = torch.tanh(self.step_child("inner", x, state, new))
        return self.gain * self.step_child("outer", h, state, new), new


class StateGainModel(FilterModel):
    """``FilterModel`` whose ``gain`` is a per-stream state param: one instance serves every gain."""

    state_params = ("gain",)

    def init_state(self, batch=1, device=None, dtype=None):
        return {**super().init_state(batch, device, dtype), "gain": torch.ones(batch, 1, 1)}

    def configure_state(self, state, params):
        gain = params.get("gain", 1.0)
        if isinstance(gain, bool) or not isinstance(gain, int | float) or not 0 < gain <= 10:
            raise ValueError(f"gain must be a number in (0, 10], got {gain!r}")
        return {**state, "gain": torch.full_like(state["gain"], gain)}

    def step(self, x, state):
        y, new = super().step(x, {k: v for k, v in state.items() if k != "gain"})
        return state["gain"] * y, {**new, "gain": state["gain"]}


class DelayModel(_Base):
    """Exactly ``x`` delayed by ``latency`` samples: the pipeline must undo the delay."""

    def __init__(self):
        super().__init__()
        self.conv = CausalConv1d(1, 1, DELAY + 1, bias=False)
        with torch.no_grad():
            self.conv.conv.weight.zero_()
            self.conv.conv.weight[0, 0, 0] = 1.0  # tap 0 reads the oldest sample: a DELAY-sample delay

    def step(self, x, state):
        self.check_length(x)
        new = {}
        return self.step_child("conv", x, state, new), new


class SourcesModel(DelayModel):
    """Two sources per channel: the delayed input and minus half of it."""

    output_kind = SOURCES

    def step(self, x, state):
        y, new = super().step(x, state)
        return torch.cat([y, -0.5 * y], dim=1), new


class MixdownModel(SourcesModel):
    """``SourcesModel`` that takes one mixture: a multichannel client is averaged to one row."""

    mixdown = True


class StereoModel(_Base):
    """A two-channel model (one row per stream): delays both channels and swaps them."""

    audio_channels = 2

    def __init__(self):
        super().__init__()
        self.conv = CausalConv1d(2, 2, DELAY + 1, groups=2, bias=False)
        with torch.no_grad():
            self.conv.conv.weight.zero_()
            self.conv.conv.weight[:, 0, 0] = 1.0

    def step(self, x, state):
        self.check_length(x)
        new = {}
        return self.step_child("conv", x, state, new).flip(1), new


class TokensModel(_Base):
    """One frame per hop, two codebooks: a strided causal conv quantized to 16 levels."""

    output_kind, latency, out_per_in = TOKENS, 0, Fraction(1, HOP)

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.enc = CausalConv1d(1, 2, HOP, stride=HOP)

    def step(self, x, state):
        self.check_length(x)
        new = {}
        z = torch.tanh(self.step_child("enc", x, state, new) * 10)
        return torch.floor((z + 1) * 7.999).long(), new


class EventsModel(_Base):
    """Per-hop energy score; its detector reports each loud frame as an event."""

    output_kind, latency, out_per_in = EVENTS, 0, Fraction(1, HOP)
    stream_params = detector_params = ("level",)

    def step(self, x, state):
        self.check_length(x)
        b, c, t = x.shape
        return x.reshape(b, c, t // HOP, HOP).square().mean(-1), {}

    def event_detector(self, rows: int, frame_rate: float, level: float = 0.1) -> LoudFrames:
        return LoudFrames(rows, frame_rate, level)


class LoudFrames:
    """Per-stream detector of ``EventsModel``: counts frames across calls, one event per frame louder
    than ``level``."""

    def __init__(self, rows: int, frame_rate: float, level: float = 0.1):
        if not 0 < level:
            raise ValueError(f"level must be > 0, got {level!r}")
        self.rows, self.frame_rate, self.frame, self.level = rows, frame_rate, 0, level

    def push(self, frames: np.ndarray) -> list[dict]:
        events = [{"label": "loud", "start": (self.frame + i) / self.frame_rate,
                   "end": (self.frame + i + 1) / self.frame_rate, "score": float(frames[i, r, 0]),
                   **({"channel": int(r)} if self.rows > 1 else {})}
                  for i, r in zip(*np.nonzero(frames[:, :, 0] > self.level), strict=True)]
        self.frame += len(frames)
        return events

    def flush(self) -> list[dict]:
        return []


class FragileModel(FilterModel):
    """Refuses input beyond +-8 (raises inside the step), to test that a failure stays in its stream."""

    def step(self, x, state):
        if x.abs().max() > 8:
            raise ValueError("input out of range")
        return super().step(x, state)


TEST_MODELS = {"test-filter": FilterModel, "test-state-gain": StateGainModel, "test-delay": DelayModel,
               "test-sources": SourcesModel, "test-mixdown": MixdownModel, "test-stereo": StereoModel,
               "test-tokens": TokensModel, "test-events": EventsModel, "test-fragile": FragileModel}


@contextmanager
def registered_test_models():
    """Register the test models for the duration of the block (other tests see the real registry)."""
    added = [name for name in TEST_MODELS if name not in _REGISTRY]
    for name in added:
        register(name, "test", TEST_MODELS[name].__doc__.splitlines()[0])(TEST_MODELS[name])
    try:
        yield
    finally:
        for name in added:
            _REGISTRY.pop(name, None)
