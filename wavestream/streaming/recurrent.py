"""Recurrent layers with explicit state: torch's GRU/LSTM on ``[B, C, T]`` features.

The hidden state is carried as ``h`` (and ``c``) of shape ``[B, num_layers, hidden]`` (batch first,
unlike torch's ``[num_layers, B, hidden]``) so that streams stack on dim 0 like every other state.

Speed: torch runs a CPU LSTM through oneDNN, which re-lays out the weights on every call: ~10 ms
for our 2x512 LSTM whatever the input, 20x the arithmetic of one stream's one step. So an LSTM
call of fewer than ``LSTM.onednn_min_rows`` rows (streams x steps) runs its cells here instead
(unless training with dropout between layers), the same equations as torch's native kernel;
bigger calls (offline, large batches) keep oneDNN, which is faster there. The process-wide
``torch.backends.mkldnn`` flag is never touched: it would switch other threads' convolutions too.
torch's GRU takes no oneDNN path, so it is left as it is. Both kernels are called directly (``run_rnn``):
nn.GRU/nn.LSTM's forward adds ~15 us of Python per call. Figures: ``benchmarks/rnn_step.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .module import StreamingModule
from .state import State


def run_rnn(rnn: nn.GRU | nn.LSTM, x: torch.Tensor, hidden: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``rnn(x, hidden)`` for a batch-first ``x [B, T, C]`` and its hidden tensors (``h``, or ``h, c``
    ``[layers, B, H]``) -> ``(y, *new hidden)``. nn.GRU/nn.LSTM.forward spend ~15 us of Python per call (the
    module call, re-reading every weight by name to see if one changed, argument checks), as much as a
    2x256 GRU's whole one-frame step; so torch's kernel (the one forward calls, same arguments) is called
    directly when the module's weight list still holds its parameters (they are swapped, e.g., by
    torch.func.functional_call or a parametrization: then forward, which rebuilds the list)."""
    params = rnn._parameters
    if all(params.get(name) is w for name, w in zip(rnn._flat_weights_names, rnn._flat_weights, strict=True)):
        run = torch.gru if isinstance(rnn, nn.GRU) else torch.lstm
        return run(x, hidden[0] if len(hidden) == 1 else hidden, rnn._flat_weights, rnn.bias, rnn.num_layers,
                   float(rnn.dropout), rnn.training, rnn.bidirectional, True)
    y, new = rnn(x, hidden[0] if len(hidden) == 1 else hidden)
    return (y, new) if isinstance(new, torch.Tensor) else (y, *new)


class _Recurrent(StreamingModule):
    rnn: nn.GRU | nn.LSTM
    state_names: tuple[str, ...]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers

    def own_state(self, batch, device, dtype) -> State:
        return {name: torch.zeros(batch, self.num_layers, self.hidden_size, device=device, dtype=dtype)
                for name in self.state_names}

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects [batch, {self.input_size}, time], got {tuple(x.shape)}")

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_input(x)
        if not x.shape[-1]:  # torch's RNNs reject empty sequences; nothing happens to the state
            return x.new_zeros(x.shape[0], self.hidden_size, 0), {k: state[k] for k in self.state_names}
        hidden = tuple(state[k].transpose(0, 1).contiguous() for k in self.state_names)
        y, *new = run_rnn(self._modules["rnn"], x.transpose(1, 2), hidden)
        return y.transpose(1, 2), {k: v.transpose(0, 1) for k, v in zip(self.state_names, new, strict=True)}


class GRU(_Recurrent):
    """``[B, input_size, T]`` -> ``[B, hidden_size, T]``; state ``h``."""

    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers)
        self.rnn = nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)


class LSTM(_Recurrent):
    """``[B, input_size, T]`` -> ``[B, hidden_size, T]``; states ``h`` and ``c``."""

    state_names = ("h", "c")
    #: inference calls with fewer rows (batch x time) than this skip oneDNN (see the module docstring);
    #: 0 = always torch's own path
    onednn_min_rows = 256

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers)
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if (self.training and self.rnn.dropout) or not 0 < x.shape[0] * x.shape[-1] < self.onednn_min_rows:
            return super().step(x, state)
        self.check_input(x)
        h, c = state["h"].unbind(1), state["c"].unbind(1)
        y = x.transpose(1, 2)  # [B, T, C]
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(self.rnn, f"{name}_l{layer}")
                                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            inputs = F.linear(y, w_ih, b_ih)  # every step's input projection at once, as torch's kernel does
            hl, cl, outs = h[layer], c[layer], []
            for t in range(inputs.shape[1]):
                i, f, g, o = (inputs[:, t] + F.linear(hl, w_hh, b_hh)).chunk(4, dim=1)
                cl = torch.sigmoid(f) * cl + torch.sigmoid(i) * torch.tanh(g)
                hl = torch.sigmoid(o) * torch.tanh(cl)
                outs.append(hl)
            y = torch.stack(outs, dim=1)
            new_h.append(hl)
            new_c.append(cl)
        return y.transpose(1, 2), {"h": torch.stack(new_h, dim=1), "c": torch.stack(new_c, dim=1)}


class GroupedGRU(StreamingModule):
    """``groups`` independent GRUs on channel groups (fewer weights: 1/groups of a full GRU).

    Input channels are split into ``groups`` contiguous groups, each run by its own GRU of
    ``hidden_size // groups`` units; the outputs are concatenated in group order. State ``h`` is
    ``[B, num_layers, hidden_size]`` with the groups' hidden units side by side.
    """

    def __init__(self, input_size: int, hidden_size: int, groups: int, num_layers: int = 1):
        super().__init__()
        if input_size % groups or hidden_size % groups:
            raise ValueError(f"input_size {input_size} and hidden_size {hidden_size} must divide by groups {groups}")
        self.input_size, self.hidden_size, self.groups, self.num_layers = input_size, hidden_size, groups, num_layers
        self.rnns = nn.ModuleList(nn.GRU(input_size // groups, hidden_size // groups, num_layers, batch_first=True)
                                  for _ in range(groups))

    def own_state(self, batch, device, dtype) -> State:
        return {"h": torch.zeros(batch, self.num_layers, self.hidden_size, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != self.input_size:
            raise ValueError(f"GroupedGRU expects [batch, {self.input_size}, time], got {tuple(x.shape)}")
        if not x.shape[-1]:
            return x.new_zeros(x.shape[0], self.hidden_size, 0), {"h": state["h"]}
        xs = x.transpose(1, 2).chunk(self.groups, dim=-1)
        hs = state["h"].transpose(0, 1).chunk(self.groups, dim=-1)
        ys, new = zip(*(run_rnn(rnn, xi, (hi.contiguous(),)) for rnn, xi, hi in zip(self.rnns, xs, hs, strict=True)),
                      strict=True)
        return torch.cat(ys, dim=-1).transpose(1, 2), {"h": torch.cat(new, dim=-1).transpose(0, 1)}
