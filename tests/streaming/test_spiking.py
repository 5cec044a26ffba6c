import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.spiking import LIF, spike
from wavestream.streaming.testing import check_all, partitions


@settings(max_examples=15, deadline=None)
@given(channels=st.integers(1, 5), decay=st.floats(0.0, 1.0), threshold=st.floats(0.2, 2.0),
       frames=st.integers(2, 40), data=st.data())
def test_lif_streaming(channels, decay, threshold, frames, data):
    x = torch.rand(3, channels, frames, generator=torch.Generator().manual_seed(frames)) * 1.5
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    check_all(lambda: LIF(channels, decay, threshold), x, parts, t)


def test_lif_integrates_fires_and_subtracts_threshold():
    lif = LIF(1, decay=0.5, threshold=1.0)
    y, state = lif.step(torch.tensor([[[0.6, 0.8, 0.0, 2.5]]]), lif.init_state(1))
    # v: 0.6 -> 0.3 + 0.8 = 1.1 (spike, v = 0.1) -> 0.05 -> 0.025 + 2.5 = 2.525 (spike, v = 1.525)
    assert y.tolist() == [[[0.0, 1.0, 0.0, 1.0]]]
    assert torch.allclose(state["v"], torch.tensor([[1.525]]))


def test_surrogate_gradient_flows_and_is_finite():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, requires_grad=True)
    lif = LIF(4, decay=0.8)
    x = torch.randn(2, 3, 50)
    spikes = lif(torch.einsum("oc,bct->bot", weight, x))
    assert 0 < spikes.sum() < spikes.numel()
    (spikes * torch.linspace(-1, 1, 50)).sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


def test_spike_surrogate_is_fast_sigmoid_derivative():
    x = torch.tensor([-0.2, 0.0, 0.1], requires_grad=True)
    s = spike(x, slope=10.0)
    s.sum().backward()
    assert s.tolist() == [0.0, 1.0, 1.0]
    assert torch.allclose(x.grad, 1 / (1 + 10 * x.detach().abs()) ** 2)


def test_lif_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="decay"):
        LIF(2, decay=1.5)
    with pytest.raises(ValueError, match=r"\[batch, 2, time\]"):
        LIF(2)(torch.zeros(1, 3, 4))
