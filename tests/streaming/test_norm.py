import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.norm import ChannelLayerNorm, CumulativeLayerNorm
from wavestream.streaming.testing import check_all, partitions


def _random_affine(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["cumulative", "channel"]), channels=st.integers(1, 6), frames=st.integers(2, 30),
       offset=st.floats(-3, 3), data=st.data())
def test_norm_streaming(kind, channels, frames, offset, data):
    cls = CumulativeLayerNorm if kind == "cumulative" else ChannelLayerNorm
    x = torch.randn(3, channels, frames, generator=torch.Generator().manual_seed(frames)) * 2 + offset
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    check_all(lambda: _random_affine(cls(channels)), x, parts, t)


def test_cumulative_layer_norm_matches_definition():
    torch.manual_seed(0)
    cln = _random_affine(CumulativeLayerNorm(4))
    x = torch.randn(2, 4, 10) * 3 + 1
    y = cln(x)
    for t in range(10):
        seen = x[:, :, :t + 1].reshape(2, -1)
        mean, var = seen.mean(1, keepdim=True), seen.var(1, unbiased=False, keepdim=True)
        expected = (x[:, :, t] - mean) / (var + cln.eps).sqrt() * cln.weight + cln.bias
        assert torch.allclose(y[:, :, t], expected, atol=1e-5)


def test_cumulative_layer_norm_state_counts_values():
    cln = CumulativeLayerNorm(3)
    _, state = cln.step(torch.ones(2, 3, 5), cln.init_state(2))
    assert state["count"].tolist() == [15, 15] and state["count"].dtype == torch.long
    assert state["mean"].dtype == state["var"].dtype == torch.float64
    assert state["mean"].tolist() == [1.0, 1.0] and state["var"].tolist() == [0.0, 0.0]
    y, same = cln.step(torch.ones(2, 3, 0), state)
    assert y.shape == (2, 3, 0) and all(torch.equal(same[k], state[k]) for k in state)


def test_channel_layer_norm_is_per_frame():
    norm = ChannelLayerNorm(5)
    x = torch.randn(1, 5, 4)
    y = norm(x)
    assert torch.allclose(y[..., 2], norm(x[..., 2:3])[..., 0], atol=1e-6)
    assert torch.allclose(y.mean(1), torch.zeros(1, 4), atol=1e-5)


def test_norms_reject_wrong_channels():
    for norm in (CumulativeLayerNorm(4), ChannelLayerNorm(4)):
        with pytest.raises(ValueError, match=r"\[batch, 4, time\]"):
            norm(torch.zeros(1, 3, 2))


def test_cumulative_layer_norm_large_mean_small_spread_chunked_equals_offline():
    # raw running sums of x and x^2 cancel catastrophically here (hypothesis found 6.8e-5 at offset 2.8)
    from wavestream.streaming.testing import assert_chunked_equals_offline

    x = torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(3)) * 0.05 + 3.0
    assert_chunked_equals_offline(_random_affine(CumulativeLayerNorm(1)), x, [1] * 64)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("frames", [1, 7])
def test_channel_layer_norm_step_is_its_layer_norm(affine, frames):
    """``step``/``normalize`` call torch.layer_norm with the LayerNorm's parameters: the module's values exactly."""
    torch.manual_seed(0)
    norm = ChannelLayerNorm(6, affine=affine)
    if affine:
        _random_affine(norm)
    x = torch.randn(3, 6, frames) * 2 + 1
    want = norm.norm(x.transpose(1, 2)).transpose(1, 2)
    y, state = norm.step(x, {})
    assert state == {} and torch.equal(y, want) and torch.equal(norm.normalize(x), want)
    assert torch.equal(norm.normalize_frame(x[..., 0]), want[..., 0])  # one frame, channels last


@pytest.mark.parametrize(("affine", "offset"), [(True, 0.0), (True, 30.0), (False, 2.0)])
def test_cumulative_layer_norm_training_path_equals_autograd(monkeypatch, affine, offset):
    """While autograd records, cLN runs through _FrameStats and _Normalize: the same outputs and state as the
    plain path and its autograd gradients (input, weight, bias) from a carried state; both pass gradcheck."""
    from wavestream.streaming.norm import _FrameStats, _Normalize
    torch.manual_seed(1)
    cln = CumulativeLayerNorm(8, affine=affine)
    if affine:
        _random_affine(cln)
    x, grad = torch.randn(2, 8, 40) * torch.rand(2, 1, 40) + offset, torch.randn(2, 8, 40)
    _, state = cln.step(torch.randn(2, 8, 7) + offset, cln.init_state(2))
    results = []
    for fused in (True, False):
        monkeypatch.setattr(CumulativeLayerNorm, "fused_backward", fused)
        xx = x.clone().requires_grad_()
        y, new_state = cln.step(xx, state)
        results.append([y, *new_state.values(), *torch.autograd.grad(y, [xx, *cln.parameters()], grad)])
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(*results, strict=True))
    with torch.no_grad():
        assert torch.equal(cln.step(x, state)[0], results[0][0])
    double = torch.randn(2, 5, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(_FrameStats.apply, (double,))
    stats = [torch.randn(2, 1, 6, dtype=torch.double), torch.rand(2, 1, 6, dtype=torch.double) + 0.5]
    affine_args = [torch.randn(5, dtype=torch.double) for _ in range(2)] if affine else [None, None]
    assert torch.autograd.gradcheck(_Normalize.apply, [double, *[t.requires_grad_() if t is not None else None
                                                                   for t in stats + affine_args]])
