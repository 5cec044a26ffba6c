"""Leaky integrate-and-fire neuron with explicit membrane state and a surrogate gradient.

Per channel and time step: ``v = decay * v + I``; a spike fires when ``v >= threshold``
(Heaviside), and firing subtracts ``threshold`` from ``v`` (soft reset). The Heaviside step has no
useful gradient, so training backpropagates through the fast-sigmoid surrogate
``d spike / d v ~= 1 / (1 + slope * |v - threshold|)^2`` (Zenke & Ganguli's SuperSpike).
"""

from __future__ import annotations

import torch

from .module import StreamingModule
from .state import State


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


class LIF(StreamingModule):
    """Input current ``[B, C, T]`` -> spikes (0. or 1.) ``[B, C, T]``; state ``v`` (membrane) ``[B, C]``."""

    def __init__(self, channels: int, decay: float = 0.9, threshold: float = 1.0, slope: float = 25.0):
        super().__init__()
        if not 0 <= decay <= 1 or threshold <= 0 or slope <= 0:
            raise ValueError(f"need 0 <= decay <= 1, threshold > 0, slope > 0; got {decay}, {threshold}, {slope}")
        self.channels, self.decay, self.threshold, self.slope = channels, decay, threshold, slope

    def own_state(self, batch, device, dtype) -> State:
        return {"v": torch.zeros(batch, self.channels, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"LIF expects [batch, {self.channels}, time], got {tuple(x.shape)}")
        v, spikes = state["v"], []
        for t in range(x.shape[-1]):  # inherently sequential: the reset depends on the last spike
            v = self.decay * v + x[..., t]
            s = spike(v - self.threshold, self.slope)
            v = v - s * self.threshold
            spikes.append(s)
        y = torch.stack(spikes, -1) if spikes else x.new_zeros(x.shape)
        return y, {"v": v}
