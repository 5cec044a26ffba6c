import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.conv import FSMN, MAX_TAPS, CausalConv1d
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


@settings(max_examples=20, deadline=None)
@given(kernel=st.integers(1, 7), dilation=st.integers(1, 9), bias=st.booleans(), units=st.integers(1, 40),
       data=st.data())
def test_depthwise_conv1d_matches_torch_conv_and_streams(kernel, dilation, bias, units, data):
    """Depthwise convs of up to MAX_TAPS taps run as shifted multiply-adds: the same values and gradients as
    torch's conv on the left-padded input, and the three streaming checks hold."""
    torch.manual_seed(kernel)
    conv = CausalConv1d(6, 6, kernel, dilation=dilation, groups=6, bias=bias)
    assert conv.taps == (kernel <= MAX_TAPS)
    x = torch.randn(3, 6, units, requires_grad=True)
    y = conv(x)
    reference = F.conv1d(F.pad(x, (conv.context, 0)), conv.conv.weight, conv.conv.bias, dilation=dilation, groups=6)
    assert torch.allclose(y, reference, atol=1e-6)
    grads = torch.autograd.grad(y.square().sum(), [x, conv.conv.weight])
    expected = torch.autograd.grad(reference.square().sum(), [x, conv.conv.weight])
    assert all(torch.allclose(g, e, atol=1e-5) for g, e in zip(grads, expected, strict=True))
    parts = data.draw(partitions(units))
    t = data.draw(st.integers(0, units - 1))
    check_all(lambda: conv, x.detach(), parts, t)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 40), kernel=st.integers(1, 4), stride=st.integers(1, 3), bias=st.booleans(),
       units=st.integers(1, 12), data=st.data())
def test_conv1d_one_frame_at_a_time(batch, kernel, stride, bias, units, data):
    """One output frame of a conv with adjacent taps runs as a matrix product of its window: the values and
    gradients of torch's conv, and stepping frame by frame (that path) equals the whole input at once (the
    conv path)."""
    if kernel < stride:
        return
    torch.manual_seed(batch)
    conv = CausalConv1d(5, 7, kernel, stride=stride, bias=bias)
    assert conv.frame_matmul and not CausalConv1d(5, 7, kernel, dilation=2).frame_matmul
    x = torch.randn(batch, 5, stride, requires_grad=True)
    prev = torch.randn(batch, 5, conv.context)
    y, new = conv.step(x, {"prev": prev})
    reference = F.conv1d(torch.cat([prev, x], -1), conv.conv.weight, conv.conv.bias)
    assert y.shape == (batch, 7, 1) and torch.allclose(y, reference, atol=1e-6)
    assert torch.equal(new["prev"], torch.cat([prev, x.detach()], -1)[..., stride:])
    grads = torch.autograd.grad(y.square().sum(), [x, conv.conv.weight])
    expected = torch.autograd.grad(reference.square().sum(), [x, conv.conv.weight])
    assert all(torch.allclose(g, e, atol=1e-5) for g, e in zip(grads, expected, strict=True))
    x = torch.randn(max(batch, 2), 5, units * stride)
    t = data.draw(st.integers(0, units * stride - 1))
    check_all(lambda: conv, x, [1] * units, t, out_per_in=1 / stride)


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_conv1d_frame_is_the_step_of_one_frame(kernel, bias):
    """``frame`` (2-D, for one-frame models) gives step's values and state exactly, in no-grad mode through a
    kept view of the weight that follows in-place updates, a replaced weight and ``.to()``; with autograd on,
    gradients reach the weight."""
    torch.manual_seed(kernel)
    conv = CausalConv1d(5, 7, kernel, bias=bias)
    x, prev = torch.randn(3, 5), torch.randn(3, 5, kernel - 1)

    def check():
        want, new = conv.step(x[..., None], {"prev": prev})
        y, new_prev = conv.frame(x, prev)
        assert torch.equal(y, want[..., 0]) and torch.equal(new_prev, new["prev"])

    with torch.no_grad():
        check()
        check()  # the kept view
        conv.conv.weight.mul_(2)
        check()
        conv.conv.weight = torch.nn.Parameter(torch.randn(7, 5, kernel))
        check()
        conv.double()
        x, prev = x.double(), prev.double()
        check()
        conv.conv.weight.data = torch.randn(7, 5, kernel, dtype=torch.float64)
        check()
    y, _ = conv.frame(x, prev)
    (grad,) = torch.autograd.grad(y.sum(), [conv.conv.weight])
    assert torch.equal(grad, torch.cat([prev, x[..., None]], -1).sum(0).expand(7, -1, -1))
    with pytest.raises(ValueError):
        CausalConv1d(5, 7, 3, stride=2).frame(x, prev)


def test_causal_conv1d_rejects_partial_hop():
    conv = CausalConv1d(1, 1, 4, stride=2)
    with pytest.raises(ValueError, match="multiple of hop"):
        conv.step(torch.zeros(1, 1, 3), conv.init_state(1))


@settings(max_examples=15, deadline=None)
@given(lookback=st.integers(1, 6), stride=st.integers(1, 3), frames=st.integers(2, 24), data=st.data())
def test_fsmn_streaming(lookback, stride, frames, data):
    x = torch.randn(3, 5, frames, generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    check_all(lambda: FSMN(5, lookback, stride), x, parts, t)


def test_fsmn_is_skip_plus_strided_taps():
    fsmn = FSMN(2, lookback=2, stride=3)
    assert fsmn.init_state(1)["conv.prev"].shape == (1, 2, 6)
    with torch.no_grad():
        fsmn.conv.conv.weight.copy_(torch.tensor([[[0.5, 0.25, 2.0]], [[1.0, 0.0, 0.0]]]))
    x = torch.arange(1.0, 9.0).expand(1, 2, 8)
    y = fsmn(x)
    # channel 0: x[t] + 2 x[t] + 0.25 x[t-3] + 0.5 x[t-6] (zeros before the start)
    t = 7
    assert y[0, 0, t] == x[0, 0, t] * 3 + 0.25 * x[0, 0, t - 3] + 0.5 * x[0, 0, t - 6]
    assert torch.equal(y[0, 1], x[0, 1] + torch.cat([torch.zeros(6), x[0, 1, :2]]))
    with pytest.raises(ValueError, match="lookback"):
        FSMN(2, lookback=0)


def test_causal_conv1d_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"\[batch, 2, time\]"):
        CausalConv1d(2, 1, 3)(torch.zeros(1, 3, 6))


@pytest.mark.parametrize(("kernel", "dilation", "bias", "frames"), [(3, 1, True, 50), (3, 16, True, 50),
                                                                     (5, 2, False, 3), (2, 7, True, 1)])
def test_depthwise_training_path_equals_autograd(monkeypatch, kernel, dilation, bias, frames):
    """While autograd records, the taps run through _DepthwiseTaps: the same outputs as the plain taps and the
    gradients autograd takes through them (input, state, weight, bias), also when a chunk is shorter than the
    context; its backward passes gradcheck in float64."""
    from wavestream.streaming.conv import _DepthwiseTaps
    torch.manual_seed(kernel * dilation)
    conv = CausalConv1d(6, 6, kernel, dilation=dilation, groups=6, bias=bias)
    x, prev, grad = torch.randn(3, 6, frames), torch.randn(3, 6, conv.context), torch.randn(3, 6, frames)
    results = []
    for fused in (True, False):
        monkeypatch.setattr(CausalConv1d, "fused_backward", fused)
        inputs = [x.clone().requires_grad_(), prev.clone().requires_grad_()]
        y, _ = conv.step(inputs[0], {"prev": inputs[1]})
        results.append([y, *torch.autograd.grad(y, inputs + list(conv.parameters()), grad)])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*results, strict=True))
    double = [t.double().requires_grad_() for t in (torch.randn(2, 3, conv.context + 4), torch.randn(3, 1, kernel))]
    bias_arg = torch.randn(3, dtype=torch.double, requires_grad=True) if bias else None
    assert torch.autograd.gradcheck(lambda f, w, b: _DepthwiseTaps.apply(f, w, b, dilation, 4), (*double, bias_arg))
