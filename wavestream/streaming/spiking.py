"""Leaky integrate-and-fire neuron with explicit membrane state and a surrogate gradient.

Per channel and time step: ``v = decay * v + I``; a spike fires when ``v >= threshold``
(Heaviside), and firing subtracts ``threshold`` from ``v`` (soft reset). The decay is one value for all
channels, or with ``learn_decay`` a value per channel that training learns (the parametric LIF of Fang et al.,
"Incorporating Learnable Membrane Time Constant to Enhance Learning of Spiking Neural Networks":
``decay = sigmoid(w)``, so every channel finds its own time constant and it stays in (0, 1)). The Heaviside step has no
useful gradient, so training backpropagates through the fast-sigmoid surrogate
``d spike / d v ~= 1 / (1 + slope * |v - threshold|)^2`` (Zenke & Ganguli's SuperSpike).

The recurrence is inherently sequential (the reset depends on the last spike), so on CPU its cost is
the per-op overhead of a loop over time. ``lif_forward`` takes four ops per frame, written into
preallocated ``[T, B, C]`` buffers, and ``LIFFunction`` makes the whole loop one autograd node with a
three-op backward loop, where autograd would record ~6 ops per frame (~3x faster on whole clips).
Inference on CPU runs the same loop outside torch (``lif_forward_inference``): compiled by numba where the
optional ``fast`` extra is installed (``lif_jit``), ~15-20x faster per layer than numpy's per-frame ops
for one stream, else in numpy, whose ops on a few hundred values cost a fraction of torch's dispatch
(2.4-3x faster than the torch loop); ``benchmarks/lif_loop.py`` times the three side by side. The loop
had been most of the spiking model's time.

Every path rounds the same way, so spikes never depend on which one ran (training, whole clips, one frame
at a time): the decay is one multiply and the input one add, each rounded to float32 (no fused
multiply-add, which rounds once and can move a membrane by an ulp across the threshold); the reset
subtracts ``threshold`` or 0, exact either way.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math

import numpy as np
import torch
from torch import nn

from .module import StreamingModule
from .state import State

logger = logging.getLogger(__name__)


class SpikeFunction(torch.autograd.Function):
    """Heaviside of ``x`` forward, fast-sigmoid derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad / (1 + ctx.slope * x.abs()).square(), None


def spike(x: torch.Tensor, slope: float = 25.0) -> torch.Tensor:
    return SpikeFunction.apply(x, slope)


Decay = float | torch.Tensor  # one value for every channel, or a float32 tensor [C] of one per channel


def lif_forward(
    x: torch.Tensor, v: torch.Tensor, decay: Decay, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Currents ``[B, C, T]`` and membrane ``[B, C]`` -> spikes ``[T, B, C]``, the membranes before
    their resets ``[T, B, C]`` (what the surrogate gradient reads), and the last membrane ``[B, C]``."""
    frames = x.shape[-1]
    before = x.new_empty(frames, *v.shape)
    spikes = x.new_empty(frames, *v.shape)
    v = v.clone()
    for x_t, before_t, spikes_t in zip(x.unbind(-1), before.unbind(0), spikes.unbind(0), strict=True):
        torch.mul(v, decay, out=before_t)
        before_t.add_(x_t)
        torch.ge(before_t, threshold, out=spikes_t)  # == spike(v - threshold): v - t >= 0 iff v >= t
        torch.sub(before_t, spikes_t, alpha=threshold, out=v)
    return spikes, before, v


def decay_array(decay: Decay | np.ndarray, channels: int) -> np.ndarray:
    """The decay as the float32 array ``[C]`` the loops outside torch read (the values torch multiplies by)."""
    if isinstance(decay, torch.Tensor):
        decay = decay.detach().numpy()
    return np.ascontiguousarray(np.broadcast_to(np.asarray(decay, dtype=np.float32), (channels,)))


def lif_forward_inference(x: torch.Tensor, v: torch.Tensor, decay: Decay | np.ndarray,
                          threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``lif_forward`` for inference on CPU float32, outside torch with the same roundings (numba's loop,
    else numpy's): currents ``[B, C, T]`` and membrane ``[B, C]`` -> spikes ``[B, C, T]`` and the last
    membrane."""
    xs = np.ascontiguousarray(x.detach().permute(2, 0, 1).numpy())  # [T, B, C]: one contiguous row per frame
    rows = compiled.lif_rows if (compiled := compiled_lif()) else lif_rows
    spikes, v = _run_rows(rows, xs, v, decay_array(decay, x.shape[1]), np.float32(threshold))
    return torch.from_numpy(spikes).permute(1, 2, 0), torch.from_numpy(v)


def _run_rows(rows, currents: np.ndarray, v: torch.Tensor, decay: np.ndarray,
              threshold: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Currents ``[T, B, C]`` (C-contiguous), membrane ``v [B, C]`` and decays ``[C]`` through a rows loop
    (``lif_rows`` or its compiled twin) -> float32 spikes ``[T, B, C]`` and the last membrane ``[B, C]``."""
    membrane = v.detach().numpy().copy()
    fired = np.empty(currents.shape, dtype=bool)
    shape = (currents.shape[0], membrane.size)  # [T, B * C] rows and a flat membrane: views of the same memory
    decays = np.tile(decay, membrane.size // decay.size)  # channel fastest, as in the flat rows
    rows(currents.reshape(shape), membrane.reshape(-1), decays, threshold, fired.reshape(shape))
    return fired.astype(np.float32), membrane


def lif_rows(currents: np.ndarray, v: np.ndarray, decay: np.ndarray, threshold: np.float32,
             fired: np.ndarray) -> None:
    """The loop over frames in numpy ops: currents ``[T, N]``, membranes and their decays ``[N]`` (membranes
    updated in place) -> ``fired`` ``[T, N]``; ``lif_jit.lif_rows`` compiles the same loop."""
    for x_t, fired_t in zip(currents, fired, strict=True):
        np.multiply(v, decay, out=v)
        np.add(v, x_t, out=v)  # the membrane before the reset
        np.greater_equal(v, threshold, out=fired_t)
        np.subtract(v, threshold, out=v, where=fired_t)  # v - threshold * spike: v itself where none


def _outside_torch(x: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether an inference loop may leave torch: CPU float32 tensors, not being traced or compiled."""
    return x.is_cpu and x.dtype == v.dtype == torch.float32 and not (
        torch.jit.is_tracing() or torch.compiler.is_compiling())


@functools.cache
def compiled_lif():
    """The ``lif_jit`` module (``lif_rows``, ``lif_frame``) where numba is installed (the ``fast`` extra), else
    None: numpy's loop and torch's frame ops then."""
    try:
        lif_jit = importlib.import_module(".lif_jit", __package__)
    except ImportError:
        return None
    except Exception as error:  # numba present but unusable (e.g. nowhere to keep its cache): the numpy loop
        logger.warning("numba's LIF loop is unavailable (%s); spiking models run numpy's loop", error)
        return None
    # compile (or load the cached code) now: ~1 s, once a process, not in a stream's first step
    one = np.zeros((1, 1), dtype=np.float32)
    lif_jit.lif_rows(one, one[0], one[0], np.float32(1.0), np.zeros((1, 1), dtype=bool))
    lif_jit.lif_frame(one, one, one[0], np.float32(1.0))
    return lif_jit


class LIFFunction(torch.autograd.Function):
    """``lif_forward`` as one autograd node; backward is BPTT through the recurrence with the surrogate,
    the gradient autograd would give for the per-frame loop with ``spike`` (the reset included), and a
    per-channel decay's own gradient where it is learned."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, v: torch.Tensor, decay: torch.Tensor, threshold: float, slope: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spikes, before, v_end = lif_forward(x, v, decay.detach(), threshold)
        ctx.save_for_backward(before, v, decay)
        ctx.threshold, ctx.slope = threshold, slope
        return spikes.permute(1, 2, 0), v_end

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor, grad_v: torch.Tensor):
        before, v_start, decay = ctx.saved_tensors
        decay, threshold = decay.detach(), ctx.threshold
        denominator = (1 + ctx.slope * (before - threshold).abs()).square()
        grad_x = torch.empty_like(before)
        grad_v = grad_v.clone()  # d loss / d membrane after the reset, carried back in time
        rows = zip(grad_spikes.permute(2, 0, 1).unbind(0), denominator.unbind(0), grad_x.unbind(0), strict=True)
        for grad_s, denominator_t, grad_x_t in reversed(list(rows)):
            # v_after = v - threshold * spike(v): the spike gets its own gradient and the reset's
            torch.addcdiv(grad_v, grad_s - threshold * grad_v, denominator_t, out=grad_x_t)
            torch.mul(grad_x_t, decay, out=grad_v)  # v = decay * v_after_prev + x
        grad_decay = None
        if ctx.needs_input_grad[2]:  # d before_t / d decay = the membrane after the last frame's reset
            after = before - threshold * (before >= threshold).to(before.dtype)
            previous = torch.cat([v_start.detach()[None], after[:-1]])
            grad_decay = (grad_x * previous).sum((0, 1))
        return grad_x.permute(1, 2, 0), grad_v, grad_decay, None, None


class LIF(StreamingModule):
    """Input current ``[B, C, T]`` -> spikes (0. or 1.) ``[B, C, T]``; state ``v`` (membrane) ``[B, C]``.
    ``learn_decay``: a decay per channel, the weight ``decay_logit`` ``[C]`` (``decay = sigmoid``), starting at
    ``decay`` in every channel; else ``decay`` for all, not a weight (a buffer outside the state dict)."""

    def __init__(self, channels: int, decay: float = 0.9, threshold: float = 1.0, slope: float = 25.0,
                 learn_decay: bool = False):
        super().__init__()
        if not 0 <= decay <= 1 or threshold <= 0 or slope <= 0 or (learn_decay and not 0 < decay < 1):
            raise ValueError(f"need 0 <= decay <= 1 (0 < decay < 1 when learned), threshold > 0, slope > 0; "
                             f"got {decay}, {threshold}, {slope}")
        self.channels, self.threshold, self.slope = channels, threshold, slope
        if learn_decay:
            self.decay_logit = nn.Parameter(torch.full((channels,), math.log(decay / (1 - decay))))
        else:
            self.decay_logit = None
            self.register_buffer("fixed_decay", torch.full((channels,), float(decay)), persistent=False)
        self._threshold32 = np.float32(threshold)  # the compiled loop's
        self._decay_cache: tuple[int, np.ndarray] | None = None  # (the logit's version, its decays as numpy)
        compiled_lif()  # when a model is built, not in its first stream's first step

    @property
    def decay(self) -> torch.Tensor:
        """The decays ``[C]`` the loops multiply by (the learned ones with their gradient)."""
        return self.fixed_decay if self.decay_logit is None else torch.sigmoid(self.decay_logit)

    def _decay_numpy(self) -> np.ndarray:
        """``decay`` as float32 numpy ``[C]`` for the loops outside torch, recomputed only when the weight
        changed (a streaming step has ten of these, each a few microseconds)."""
        version = -1 if self.decay_logit is None else self.decay_logit._version
        if self._decay_cache is None or self._decay_cache[0] != version:
            with torch.no_grad():
                self._decay_cache = (version, decay_array(self.decay, self.channels))
        return self._decay_cache[1]

    def own_state(self, batch, device, dtype) -> State:
        return {"v": torch.zeros(batch, self.channels, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"LIF expects [batch, {self.channels}, time], got {tuple(x.shape)}")
        v, decay = state["v"], self.decay
        if torch.is_grad_enabled() and (x.requires_grad or v.requires_grad or decay.requires_grad):
            y, v = LIFFunction.apply(x, v, decay, self.threshold, self.slope)
        elif _outside_torch(x, v):  # inference: numba's or numpy's loop, no node
            y, v = lif_forward_inference(x, v, self._decay_numpy(), self.threshold)
        else:
            spikes, _, v = lif_forward(x, v, decay, self.threshold)
            y = spikes.permute(1, 2, 0)
        return y, {"v": v}

    def frame(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``step`` on one time step without autograd or checks: currents and membrane ``[B, C]`` -> spikes
        and the new membrane ``[B, C]``, the ops of ``lif_forward``. On CPU float32 with numba, its one-frame
        loop: one call instead of five torch ops (a streaming step of ``kws-spiking`` has ten of these; ~15 us a
        layer less than wrapping the rows loop did). Contiguous inputs only: another layout would compile
        another version of the loop in a stream's step."""
        if (compiled := compiled_lif()) is not None and _outside_torch(x, v) and x.is_contiguous() \
                and v.is_contiguous() and not (x.requires_grad or v.requires_grad):
            spikes, membrane = compiled.lif_frame(x.numpy(), v.numpy(), self._decay_numpy(), self._threshold32)
            return torch.from_numpy(spikes), torch.from_numpy(membrane)
        with torch.no_grad():
            before = torch.mul(v, self.decay).add_(x)
        spikes = torch.ge(before, self.threshold).to(x.dtype)
        return spikes, torch.sub(before, spikes, alpha=self.threshold)
