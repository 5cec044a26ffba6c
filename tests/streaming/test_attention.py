import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.attention import CausalAttention
from wavestream.streaming.testing import check_all, partitions


def reference(att: CausalAttention, x: torch.Tensor) -> torch.Tensor:
    """Plain masked softmax attention over the whole sequence, band of `window` frames."""
    b, _, n = x.shape
    q, k, v = att.qkv(x.transpose(1, 2)).view(b, n, 3, att.heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    t = torch.arange(n)
    band = (t[None, :] <= t[:, None]) & (t[None, :] > t[:, None] - att.window)
    weights = scores.masked_fill(~band, float("-inf")).softmax(-1)
    return att.out((weights @ v).transpose(1, 2).reshape(b, n, -1)).transpose(1, 2)


@settings(max_examples=20, deadline=None)
@given(heads=st.sampled_from([1, 2]), head_dim=st.sampled_from([2, 4]), window=st.integers(2, 9),
       frames=st.integers(2, 30), data=st.data())
def test_causal_attention_streaming(heads, head_dim, window, frames, data):
    x = torch.randn(3, heads * head_dim, frames, generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))

    def make():
        torch.manual_seed(window)
        return CausalAttention(heads * head_dim, heads, window)

    check_all(make, x, parts, t)
    with torch.no_grad():
        att = make()
        assert torch.allclose(att(x), reference(att, x), atol=1e-5)


def test_ring_holds_the_last_window_frames_by_slot():
    att = CausalAttention(4, 1, window=4)
    x = torch.randn(1, 4, 7)
    _, state = att.step(x, att.init_state(1))
    keys = att.qkv(x.transpose(1, 2))[0, :, 4:8]  # keys of frames 0..6
    assert state["pos"].tolist() == [7]
    for p in (4, 5, 6):  # the last window - 1 = 3 frames, frame p in slot p mod 3
        assert torch.allclose(state["k"][0, 0, p % 3], keys[p])


def test_attention_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="heads"):
        CausalAttention(6, 4, 8)
    with pytest.raises(ValueError, match="window"):
        CausalAttention(4, 2, 1)
    with pytest.raises(ValueError, match=r"\[batch, 4, time\]"):
        CausalAttention(4, 2, 4)(torch.zeros(1, 3, 2))
