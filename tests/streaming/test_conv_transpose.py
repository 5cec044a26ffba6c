import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.conv import CausalConv1d, CausalConvTranspose1d
from wavestream.streaming.module import StreamingSequential
from wavestream.streaming.testing import check_all, partitions


@settings(max_examples=25, deadline=None)
@given(kernel=st.integers(1, 8), stride=st.integers(1, 4), dilation=st.integers(1, 2),
       groups=st.sampled_from([1, 2]), bias=st.booleans(), frames=st.integers(2, 16), data=st.data())
def test_causal_conv_transpose1d_streaming(kernel, stride, dilation, groups, bias, frames, data):
    if (kernel - 1) * dilation + 1 < stride:
        with pytest.raises(ValueError, match="shorter than stride"):
            CausalConvTranspose1d(4, 6, kernel, stride, dilation, groups)
        return
    x = torch.randn(3, 4, frames, generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))

    def make():
        torch.manual_seed(kernel * 10 + stride)
        m = CausalConvTranspose1d(4, 6, kernel, stride, dilation, groups, bias)
        if bias:
            torch.nn.init.normal_(m.convtr.bias)  # a visible bias, so adding it twice would show
        return m

    check_all(make, x, parts, t, out_per_in=stride)


def test_conv_transpose_is_trimmed_torch_conv_transpose_with_bias_once():
    torch.manual_seed(0)
    m = CausalConvTranspose1d(3, 2, kernel_size=5, stride=2, groups=1)
    torch.nn.init.normal_(m.convtr.bias)
    x = torch.randn(2, 3, 6)
    reference = m.convtr(x)[..., :12]  # torch's full output, right part (needs future frames) trimmed
    assert torch.allclose(m(x), reference, atol=1e-6)
    y1, s = m.step(x[..., :1], m.init_state(2))
    y2, _ = m.step(x[..., 1:], s)
    assert torch.allclose(torch.cat([y1, y2], -1), reference, atol=1e-6)
    assert torch.allclose(s["partial"], F.conv_transpose1d(x[..., :1], m.convtr.weight, stride=2)[..., 2:])


@settings(max_examples=25, deadline=None)
@given(kernel=st.integers(1, 9), stride=st.integers(1, 5), dilation=st.integers(1, 3),
       groups=st.sampled_from([1, 2, 4]), frames=st.integers(1, 30))
def test_matmul_and_fold_is_torch_conv_transpose(kernel, stride, dilation, groups, frames):
    """The step's transposed conv (one matmul per group, overlap-added by fold) gives torch's conv_transpose1d
    outputs and gradients, trimmed to what is final."""
    if (kernel - 1) * dilation + 1 < stride:
        return
    torch.manual_seed(kernel * 100 + stride * 10 + groups)
    m = CausalConvTranspose1d(4, 8, kernel, stride, dilation, groups)
    torch.nn.init.normal_(m.convtr.bias)
    x = torch.randn(2, 4, frames, requires_grad=True)
    y = m(x)
    reference = m.convtr(x)[..., :frames * stride]
    assert torch.allclose(y, reference, atol=1e-5)
    grads = torch.autograd.grad(y.square().sum(), [x, m.convtr.weight, m.convtr.bias])
    expected = torch.autograd.grad(reference.square().sum(), [x, m.convtr.weight, m.convtr.bias])
    assert all(torch.allclose(g, e, atol=1e-4) for g, e in zip(grads, expected, strict=True))


def test_conv_transpose_undoes_a_strided_conv_in_time_scale():
    chain = StreamingSequential(CausalConv1d(1, 4, 4, stride=2), CausalConvTranspose1d(4, 1, 4, stride=2))
    assert chain.hop == 2 and chain.out_per_in == 1
    x = torch.randn(2, 1, 40)
    assert chain(x).shape == x.shape
    check_all(lambda: chain, x, [3, 1, 10, 6], 17)


def test_conv_transpose_rejects_bad_input():
    m = CausalConvTranspose1d(2, 2, 4, stride=2)
    with pytest.raises(ValueError, match=r"\[batch, 2, time\]"):
        m(torch.zeros(1, 3, 4))
    y, s = m.step(torch.zeros(1, 2, 0), m.init_state(1))
    assert y.shape == (1, 2, 0) and s["partial"].shape == (1, 2, 2)
