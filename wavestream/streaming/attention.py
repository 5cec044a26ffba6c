"""Bounded causal self-attention with a ring KV cache.

Frame t attends to frames ``t - window + 1 .. t`` (itself and ``window - 1`` before). The state
keeps the keys and values of the last ``window - 1`` frames in a ring: frame p lives in slot
``p mod (window - 1)``, so a step writes only the new frames and never shifts the cache. Each
stream's position ``pos`` (frames seen) gives every slot's frame index, which masks the slots not
yet written and those out of the window; streams at different positions share one batch.

No positional encoding is added (attention is order-blind within the window); put a causal conv
or similar before it when order matters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .module import StreamingModule
from .state import State


class CausalAttention(StreamingModule):
    """Multi-head self-attention over a sliding causal window: ``[B, dim, T] -> [B, dim, T]``.

    State: ``k`` and ``v`` rings ``[B, heads, window - 1, dim // heads]`` and ``pos`` (int64 ``[B]``).
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must divide by heads {heads}")
        if window < 2:
            raise ValueError(f"window must be >= 2 (the frame itself and at least one before), got {window}")
        self.dim, self.heads, self.window, self.ring = dim, heads, window, window - 1
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def own_state(self, batch, device, dtype) -> State:
        shape = (batch, self.heads, self.ring, self.dim // self.heads)
        zeros = torch.zeros(shape, device=device, dtype=dtype)
        return {"k": zeros, "v": zeros.clone(), "pos": torch.zeros(batch, device=device, dtype=torch.long)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"CausalAttention expects [batch, {self.dim}, time], got {tuple(x.shape)}")
        b, _, n = x.shape
        if not n:
            return x.new_zeros(b, self.dim, 0), {"k": state["k"], "v": state["v"], "pos": state["pos"]}
        q, k, v = self.qkv(x.transpose(1, 2)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        ring_k, ring_v, pos = state["k"], state["v"], state["pos"]
        outs = []
        for start in range(0, n, self.window):  # blocks of `window` frames bound memory to O(n * window)
            block = slice(start, start + self.window)
            o, ring_k, ring_v = self._attend(q[:, :, block], k[:, :, block], v[:, :, block], ring_k, ring_v, pos)
            pos = pos + o.shape[2]
            outs.append(o)
        y = torch.cat(outs, dim=2).transpose(1, 2).reshape(b, n, self.dim)
        return self.out(y).transpose(1, 2), {"k": ring_k, "v": ring_v, "pos": pos}

    def _attend(self, q, k, v, ring_k, ring_v, pos):
        """One block of at most ``window`` frames: attend over ring + block, then write the block."""
        n, ring = q.shape[2], self.ring
        slots = torch.arange(ring, device=q.device)
        start = pos[:, None]  # [B, 1]
        # frame index held by each slot: the latest p < start with p = slot (mod ring); < 0 if unwritten
        slot_pos = start - 1 - torch.remainder(start - 1 - slots, ring)
        query_pos = start + torch.arange(n, device=q.device)  # [B, n]
        key_pos = torch.cat([slot_pos, query_pos], dim=1)[:, None, :]  # [B, 1, ring + n]
        visible = (key_pos >= 0) & (key_pos <= query_pos[..., None]) & (key_pos > query_pos[..., None] - self.window)
        keys, values = torch.cat([ring_k, k], dim=2), torch.cat([ring_v, v], dim=2)
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible[:, None])
        # new ring: each slot takes its latest frame, from this block if it was written here
        end = start + n
        latest = end - 1 - torch.remainder(end - 1 - slots, ring)
        source = torch.where(latest >= start, ring + latest - start, slots)  # index into ring + block
        source = source[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[3])
        return o, keys.gather(2, source), values.gather(2, source)
