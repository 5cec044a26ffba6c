import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.conv import CausalConv1d
from wavestream.streaming.testing import check_all, partitions


@settings(max_examples=25, deadline=None)
@given(
    kernel=st.integers(1, 7), stride=st.integers(1, 4), dilation=st.integers(1, 3),
    groups=st.sampled_from([1, 2]), units=st.integers(4, 24), data=st.data(),
)
def test_causal_conv1d_streaming(kernel, stride, dilation, groups, units, data):
    if (kernel - 1) * dilation + 1 < stride:
        with pytest.raises(ValueError):
            CausalConv1d(4, 6, kernel, stride, dilation, groups)
        return
    torch.manual_seed(0)
    x = torch.randn(3, 4, units * stride)
    parts = data.draw(partitions(units))
    t = data.draw(st.integers(0, units * stride - 1))
    check_all(lambda: CausalConv1d(4, 6, kernel, stride, dilation, groups), x, parts, t, out_per_in=1 / stride)


def test_causal_conv1d_rejects_partial_hop():
    conv = CausalConv1d(1, 1, 4, stride=2)
    with pytest.raises(ValueError, match="multiple of hop"):
        conv.step(torch.zeros(1, 1, 3), conv.init_state(1))
