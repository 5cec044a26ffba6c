"""Explicit streaming state: a flat ``dict[str, Tensor]`` with the batch on dim 0.

Row *i* of every tensor belongs to stream *i*, so many streams can be stacked into one batch,
stepped together and split back. Keys of composite modules are dotted paths ("enc.0.conv.prev").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

State = dict[str, torch.Tensor]


def _check_same_keys(states: Sequence[State]) -> None:
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys:
            raise ValueError(f"states have different keys: {sorted(keys ^ set(s))}")


def stack_states(states: Sequence[State]) -> State:
    """Concatenate states of several streams (each with any batch size) along the batch dim."""
    if not states:
        raise ValueError("stack_states needs at least one state")
    _check_same_keys(states)
    return {k: torch.cat([s[k] for s in states], dim=0) for k in states[0]}


def split_state(state: State, sizes: Sequence[int] | None = None) -> list[State]:
    """Split a batched state into per-stream states (batch 1 each, or the given row counts).

    A stateless module's empty state splits into empty states when ``sizes`` is given."""
    if not state and sizes is not None:
        return [{} for _ in sizes]
    batch = state_batch_size(state)
    sizes = list(sizes) if sizes is not None else [1] * batch
    if sum(sizes) != batch:
        raise ValueError(f"split sizes {sizes} do not add up to batch {batch}")
    parts = {k: torch.split(v, sizes, dim=0) for k, v in state.items()}
    return [{k: parts[k][i] for k in state} for i in range(len(sizes))]


def select_rows(state: State, rows: Sequence[int] | torch.Tensor) -> State:
    """The state of the streams in ``rows`` (in that order)."""
    index = torch.as_tensor(rows, dtype=torch.long)
    return {k: v.index_select(0, index.to(v.device)) for k, v in state.items()}


def reset_rows(state: State, rows: Sequence[int] | torch.Tensor, fresh: State) -> State:
    """Return a copy of ``state`` whose ``rows`` are replaced by the batch-1 ``fresh`` state."""
    _check_same_keys([state, fresh])
    index = torch.as_tensor(rows, dtype=torch.long)
    out = {}
    for k, v in state.items():
        v = v.clone()
        if len(index):
            v[index.to(v.device)] = fresh[k].to(v.device, v.dtype).expand(len(index), *v.shape[1:])
        out[k] = v
    return out


def state_to(state: State, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> State:
    """Move a state; only floating-point entries change dtype (counters stay integer)."""
    out = {}
    for k, v in state.items():
        if dtype is not None and v.is_floating_point():
            out[k] = v.to(device=device, dtype=dtype)
        else:
            out[k] = v.to(device=device)
    return out


def state_batch_size(state: State) -> int:
    if not state:
        raise ValueError("an empty state (stateless module) has no batch size")
    sizes = {v.shape[0] for v in state.values()}
    if len(sizes) != 1:
        raise ValueError(f"inconsistent batch sizes in state: {sorted(sizes)}")
    return sizes.pop()


def state_to_bytes(state: State) -> bytes:
    """Serialize with safetensors (no pickle)."""
    # copies: safetensors refuses entries that share memory (a state may hold one tensor twice)
    return _st_save({k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in state.items()})


def state_from_bytes(data: bytes) -> State:
    return dict(_st_load(data))


def sub_state(state: State, prefix: str) -> State:
    """Entries under ``prefix.`` with the prefix removed (the state of a child module)."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


def prefixed(state: State, prefix: str) -> State:
    return {f"{prefix}.{k}": v for k, v in state.items()}
