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



@pytest.mark.parametrize("decay", [0.5, 0.83])
def test_frame_is_the_step_of_one_frame(decay):
    lif = LIF(6, decay=decay, threshold=0.7)
    x, v = torch.rand(4, 6) * 1.5, torch.rand(4, 6)
    want, state = lif.step(x[..., None], {"v": v})
    spikes, new_v = lif.frame(x, v)
    assert torch.equal(spikes, want[..., 0]) and torch.allclose(new_v, state["v"], rtol=0, atol=1e-7)

def test_surrogate_gradient_flows_and_is_finite():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, requires_grad=True)
    lif = LIF(4, decay=0.8)
    x = torch.randn(2, 3, 50)
    spikes = lif(torch.einsum("oc,bct->bot", weight, x))
    assert 0 < spikes.sum() < spikes.numel()
    (spikes * torch.linspace(-1, 1, 50)).sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


def per_frame_lif(lif: LIF, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition, one frame at a time, differentiated by autograd through ``spike``."""
    spikes = []
    for t in range(x.shape[-1]):
        v = lif.decay * v + x[..., t]
        s = spike(v - lif.threshold, lif.slope)
        v = v - s * lif.threshold
        spikes.append(s)
    return torch.stack(spikes, -1), v


@pytest.mark.parametrize("decay", [0.5, 0.83])
def test_lif_equals_the_per_frame_definition_and_its_gradient(decay):
    """The fused time loop gives the same spikes and membrane, and backpropagation through time with the
    surrogate (reset path included) gives autograd's gradients for the input current and the start membrane."""
    g = torch.Generator().manual_seed(2)
    lif = LIF(6, decay=decay, threshold=0.7, slope=5.0)
    x = (torch.randn(3, 6, 60, generator=g) * 0.8).requires_grad_()
    v = (torch.rand(3, 6, generator=g) * 0.5).requires_grad_()
    w_spikes, w_v = torch.randn(3, 6, 60, generator=g), torch.randn(3, 6, generator=g)

    def fused(lif, x, v):
        y, state = lif.step(x, {"v": v})
        return y, state["v"]

    grads = []
    for run in (per_frame_lif, fused):
        spikes, v_end = run(lif, x, v)
        grads.append((spikes, v_end, *torch.autograd.grad((spikes * w_spikes).sum() + (v_end * w_v).sum(), (x, v))))
    (ref_spikes, ref_v, ref_gx, ref_gv), (spikes, v_end, gx, gv) = grads
    assert 0 < ref_spikes.mean() < 1
    assert torch.equal(spikes, ref_spikes) and torch.allclose(v_end, ref_v, atol=1e-6)
    assert torch.allclose(gx, ref_gx, atol=1e-6) and torch.allclose(gv, ref_gv, atol=1e-6)
    with torch.no_grad():  # inference skips the autograd node: the same numbers
        y, state = lif.step(x, {"v": v})
    assert torch.equal(y, spikes) and torch.equal(state["v"], v_end)


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


@pytest.mark.parametrize("loop", ["numpy", "numba"])
@pytest.mark.parametrize("channels", [5, 200])  # short rows and rows long enough for vectorized kernels
def test_inference_loops_round_as_the_torch_loop(channels, loop, monkeypatch):
    """Inference on CPU runs the time loop outside torch, compiled by numba where it is installed, else in
    numpy: the same spikes and membranes, bit for bit, as the torch loop that training differentiates, for
    currents that put many membranes within an ulp or so of the threshold."""
    from wavestream.streaming import spiking
    if loop == "numba":
        pytest.importorskip("numba")
        assert spiking.compiled_lif() is not None
    else:
        monkeypatch.setattr(spiking, "compiled_lif", lambda: None)
    g = torch.Generator().manual_seed(channels)
    x = torch.rand(2, channels, 300, generator=g) * 0.9 + 0.05
    v = torch.rand(2, channels, generator=g)
    spikes, _, v_end = spiking.lif_forward(x, v, 0.83, 0.7)
    y, v_numpy = spiking.lif_forward_inference(x, v, 0.83, 0.7)
    assert 0.1 < spikes.mean() < 0.9
    assert torch.equal(y, spikes.permute(1, 2, 0)) and torch.equal(v_numpy, v_end)


@pytest.mark.parametrize("loop", ["torch", "numba"])
def test_one_frame_steps_give_the_whole_clips_spikes(loop, monkeypatch):
    """``LIF.frame`` (a streaming step's path: torch ops, or numba's loop where it is installed) gives the
    spikes and membranes of the torch loop over the whole clip, frame by frame, bit for bit."""
    from wavestream.streaming import spiking
    if loop == "numba":
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(spiking, "compiled_lif", lambda: None)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 64, 200, generator=g) * 0.9 + 0.05
    v = torch.rand(2, 64, generator=g)
    spikes, _, v_end = spiking.lif_forward(x, v, 0.83, 0.7)
    lif = LIF(64, decay=0.83, threshold=0.7)
    with torch.no_grad():
        for t in range(x.shape[-1]):
            s, v = lif.frame(x[..., t].contiguous(), v)
            assert torch.equal(s, spikes[t])
    assert torch.equal(v, v_end)


def test_without_numba_inference_runs_numpys_loop(monkeypatch):
    """numba is an optional extra: where it cannot be imported, the compiled loop is None and inference
    takes numpy's loop, with the same spikes."""
    import sys

    from wavestream.streaming import spiking
    spiking.compiled_lif.cache_clear()
    monkeypatch.setitem(sys.modules, "wavestream.streaming.lif_jit", None)  # import fails as without numba
    try:
        assert spiking.compiled_lif() is None
        x = torch.rand(1, 8, 50, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
        spikes, _, v_end = spiking.lif_forward(x, torch.zeros(1, 8), 0.83, 0.7)
        with torch.no_grad():
            y, state = LIF(8, decay=0.83, threshold=0.7).step(x, {"v": torch.zeros(1, 8)})
        assert torch.equal(y, spikes.permute(1, 2, 0)) and torch.equal(state["v"], v_end)
    finally:
        spiking.compiled_lif.cache_clear()


def learned_lif(channels: int, seed: int, threshold: float = 0.7) -> LIF:
    """A LIF with a learned decay per channel, spread over 0.3-0.95 as training might leave them."""
    lif = LIF(channels, decay=0.5, threshold=threshold, slope=5.0, learn_decay=True)
    with torch.no_grad():
        lif.decay_logit.copy_(torch.logit(torch.rand(channels, generator=torch.Generator().manual_seed(seed))
                                          * 0.65 + 0.3))
    return lif


def test_learned_decay_starts_as_the_fixed_one_and_is_a_weight():
    x = torch.rand(2, 5, 40, generator=torch.Generator().manual_seed(0)) * 1.5
    fixed, learned = LIF(5, decay=0.5), LIF(5, decay=0.5, learn_decay=True)
    assert list(dict(learned.named_parameters())) == ["decay_logit"] and not list(fixed.parameters())
    assert torch.equal(learned.decay, torch.full((5,), 0.5))  # sigmoid(0) is 0.5 exactly
    with torch.no_grad():
        assert torch.equal(fixed(x), learned(x))
    with pytest.raises(ValueError, match="decay"):
        LIF(2, decay=1.0, learn_decay=True)


@settings(max_examples=10, deadline=None)
@given(channels=st.integers(1, 5), frames=st.integers(2, 40), data=st.data())
def test_learned_decay_streaming(channels, frames, data):
    x = torch.rand(3, channels, frames, generator=torch.Generator().manual_seed(frames)) * 1.5
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    check_all(lambda: learned_lif(channels, seed=channels), x, parts, t)


def test_learned_decay_gets_the_per_frame_definitions_gradient():
    """Backpropagation through time gives autograd's gradient for each channel's decay weight too (through
    every membrane it multiplies, the resets' included), beside the current's and the start membrane's."""
    g = torch.Generator().manual_seed(4)
    lif = learned_lif(6, seed=1)
    x = (torch.randn(3, 6, 60, generator=g) * 0.8).requires_grad_()
    v = (torch.rand(3, 6, generator=g) * 0.5).requires_grad_()
    w_spikes, w_v = torch.randn(3, 6, 60, generator=g), torch.randn(3, 6, generator=g)
    grads = []
    for run in (per_frame_lif, lambda lif, x, v: (lambda y, s: (y, s["v"]))(*lif.step(x, {"v": v}))):
        spikes, v_end = run(lif, x, v)
        loss = (spikes * w_spikes).sum() + (v_end * w_v).sum()
        grads.append((spikes, v_end, *torch.autograd.grad(loss, (x, v, lif.decay_logit))))
    (ref_spikes, ref_v, *ref_grads), (spikes, v_end, *fused_grads) = grads
    assert 0 < ref_spikes.mean() < 1 and torch.equal(spikes, ref_spikes)
    assert torch.allclose(v_end, ref_v, atol=1e-6)
    for ref, got in zip(ref_grads, fused_grads, strict=True):
        assert ref.abs().sum() > 0 and torch.allclose(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loop", ["torch", "numpy", "numba"])
def test_learned_decay_rounds_alike_on_every_path(loop, monkeypatch):
    """Per-channel decays: whole clips outside torch (numba's or numpy's loop) and one frame at a time give the
    training loop's spikes and membranes bit for bit."""
    from wavestream.streaming import spiking
    if loop == "numba":
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(spiking, "compiled_lif", lambda: None)
    lif = learned_lif(64, seed=2)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 64, 200, generator=g) * 0.9 + 0.05
    v = torch.rand(2, 64, generator=g)
    with torch.no_grad():
        spikes, _, v_end = spiking.lif_forward(x, v, lif.decay, lif.threshold)
        if loop != "torch":
            y, v_loop = spiking.lif_forward_inference(x, v, lif.decay, lif.threshold)
            assert torch.equal(y, spikes.permute(1, 2, 0)) and torch.equal(v_loop, v_end)
        for t in range(x.shape[-1]):
            s, v = lif.frame(x[..., t].contiguous(), v)
            assert torch.equal(s, spikes[t])
    assert 0.1 < spikes.mean() < 0.9 and torch.equal(v, v_end)
