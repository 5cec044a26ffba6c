"""The three streaming checks every layer and model must pass (docs/design.md, "The streaming contract").

1. chunked == offline: concatenated ``step`` outputs over any hop-multiple partition equal ``forward``;
2. causality: changing the input from time t on leaves outputs before t - latency unchanged;
3. batch independence: streams at different positions stepped in one batch equal each alone.

Shared by the layer tests and the model tests so that every module is held to the same promise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import torch
from hypothesis import strategies as st

from .module import StreamingModule
from .state import split_state, stack_states, state_from_bytes, state_to_bytes

ATOL = 1e-5


def partitions(total_units: int, max_parts: int = 8) -> st.SearchStrategy[list[int]]:
    """Hypothesis strategy: a list of positive unit counts adding up to ``total_units``."""

    @st.composite
    def _draw(draw):
        cuts = draw(st.lists(st.integers(1, max(total_units - 1, 1)), max_size=max_parts - 1, unique=True))
        edges = [0, *sorted(c for c in cuts if 0 < c < total_units), total_units]
        return [b - a for a, b in zip(edges, edges[1:], strict=False) if b > a]

    return _draw()


def run_chunked(module: StreamingModule, x: torch.Tensor, units: Sequence[int], state=None) -> torch.Tensor:
    """Feed ``x`` in chunks of ``units[i] * hop`` time steps; return the concatenated outputs."""
    state = module.init_state(x.shape[0], x.device, x.dtype) if state is None else state
    outs, pos = [], 0
    for n in units:
        chunk = x[..., pos:pos + n * module.hop]
        pos += n * module.hop
        y, state = module.step(chunk, state)
        outs.append(y)
    assert pos == x.shape[-1], "partition does not cover the input"
    return torch.cat(outs, dim=-1)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}"
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    return (a - b).abs().max().item() if a.numel() else 0.0


@torch.no_grad()
def assert_chunked_equals_offline(module: StreamingModule, x: torch.Tensor, units: Sequence[int],
                                  atol: float = ATOL) -> None:
    module.eval()
    offline = module(x)
    chunked = run_chunked(module, x, units)
    err = max_abs_diff(chunked, offline)
    assert err <= atol, f"chunked != offline: max abs error {err:.3g} > {atol} for partition {list(units)}"


@torch.no_grad()
def assert_causal(module: StreamingModule, x: torch.Tensor, t: int,
                  out_per_in: float | Fraction | None = None, atol: float = ATOL) -> None:
    """Perturb ``x[..., t:]``; outputs depending only on inputs before ``t - latency`` must not move.

    ``out_per_in`` is output time steps per input time step (1/stride for a downsampler); it
    defaults to the module's own ``out_per_in``.
    """
    out_per_in = module.out_per_in if out_per_in is None else Fraction(out_per_in).limit_denominator(1 << 20)
    module.eval()
    y = module(x)
    x2 = x.clone()
    x2[..., t:] = torch.randn_like(x2[..., t:]) * 10
    y2 = module(x2)
    # whole step units that end at or before t - latency are safe
    safe_units = max(t - module.latency, 0) // module.hop
    n_safe = int(safe_units * module.hop * out_per_in)
    err = max_abs_diff(y[..., :n_safe], y2[..., :n_safe])
    assert err <= atol, f"not causal: output before {n_safe} changed by {err:.3g} when input from {t} changed"


@torch.no_grad()
def assert_batch_independent(module: StreamingModule, streams: Sequence[torch.Tensor],
                             warmups: Sequence[int], units: int, atol: float = ATOL) -> None:
    """Each stream ``i`` (shape ``[1, ..., T]``) is first advanced alone by ``warmups[i]`` units, so
    the streams sit at different positions; then ``units`` more units are stepped once in one batch
    and compared with stepping each stream alone. Also checks the state round-trips through bytes."""
    module.eval()
    hop = module.hop
    states, alone, alone_states = [], [], []
    for x, w in zip(streams, warmups, strict=True):
        s = module.init_state(1, x.device, x.dtype)
        if w:
            _, s = module.step(x[..., :w * hop], s)
        s = state_from_bytes(state_to_bytes(s))  # serialization must not change anything
        states.append(s)
        chunk = x[..., w * hop:(w + units) * hop]
        y, s_after = module.step(chunk, s)
        alone.append(y)
        alone_states.append(s_after)
    batch_x = torch.cat([x[..., w * hop:(w + units) * hop] for x, w in zip(streams, warmups, strict=True)])
    batch_y, batch_state = module.step(batch_x, stack_states(states))
    for i, (y, s) in enumerate(zip(alone, alone_states, strict=True)):
        err = max_abs_diff(batch_y[i:i + 1], y)
        assert err <= atol, f"stream {i} differs in a batch by {err:.3g}"
        for k, v in split_state(batch_state, [1] * len(alone))[i].items():
            err = max_abs_diff(v, s[k])
            assert err <= atol, f"stream {i}: state {k!r} differs in a batch by {err:.3g}"


@torch.no_grad()
def assert_step_is_pure(module: StreamingModule, x: torch.Tensor, units: int = 1) -> None:
    """``step`` must not change its input or state tensors in place (callers keep and reuse them)."""
    module.eval()
    state = module.init_state(x.shape[0], x.device, x.dtype)
    for chunk in (x[..., :units * module.hop], x[..., units * module.hop:2 * units * module.hop]):
        if not chunk.shape[-1]:
            break
        chunk_copy, state_copy = chunk.clone(), {k: v.clone() for k, v in state.items()}
        _, new_state = module.step(chunk, state)
        assert torch.equal(chunk, chunk_copy), "step changed its input in place"
        for k, v in state.items():
            assert torch.equal(v, state_copy[k]), f"step changed state entry {k!r} in place"
        assert set(new_state) == set(state), f"step changed the state keys: {sorted(set(new_state) ^ set(state))}"
        state = new_state


def check_all(make: Callable[[], StreamingModule], x: torch.Tensor, units: Sequence[int], t: int,
              out_per_in: float | Fraction | None = None, atol: float = ATOL) -> None:
    """All three checks (and step purity) on one module and one input ``x`` of shape ``[B, ..., T]`` (B >= 2)."""
    module = make()
    assert_step_is_pure(module, x)
    assert_chunked_equals_offline(module, x, units, atol)
    assert_causal(module, x, t, out_per_in, atol)
    total = x.shape[-1] // module.hop
    streams = [x[i:i + 1] for i in range(x.shape[0])]
    warmups = [(i * 3) % max(total // 2, 1) for i in range(len(streams))]
    assert_batch_independent(module, streams, warmups, max(total // 2, 1), atol)
