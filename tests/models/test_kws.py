import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.data.corpora import KEYWORDS
from wavestream.models.kws import KWS_CLASSES, LMUFormerKWS
from wavestream.models.registry import describe, load_model
from wavestream.streaming.testing import (
    assert_batch_independent,
    assert_causal,
    assert_chunked_equals_offline,
    assert_step_is_pure,
    max_abs_diff,
    partitions,
    run_chunked,
)

HOP = 160
VARIANTS = ["kws", "kws-spiking"]


@pytest.fixture(scope="module", params=VARIANTS)
def model(request):
    torch.manual_seed(0)
    return load_model(request.param)


def audio(batch: int, frames: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(batch, 1, frames * HOP, generator=torch.Generator().manual_seed(seed)) * scale


@settings(max_examples=6, deadline=None)
@given(frames=st.integers(2, 40), data=st.data())
def test_chunked_equals_offline(model, frames, data):
    assert_chunked_equals_offline(model, audio(2, frames, frames), data.draw(partitions(frames, max_parts=10)))


@settings(max_examples=5, deadline=None)
@given(t=st.integers(0, 30 * HOP - 1))
def test_causal(model, t):
    assert_causal(model, audio(2, 30, t), t)


def test_batch_independent(model):
    g = torch.Generator().manual_seed(3)
    streams = [torch.randn(1, 1, 40 * HOP, generator=g) * s for s in (0.01, 0.3, 1.0)]
    assert_batch_independent(model, streams, warmups=[0, 5, 17], units=12)


def test_step_is_pure(model):
    assert_step_is_pure(model, audio(2, 6, 1), units=3)


def test_one_frame_at_a_time_equals_offline(model):
    """The point of the LMU: the model truly runs one 10 ms frame per step, with the same result."""
    x = audio(2, 150, 7)  # longer than the direct closed form's 16 frames: offline uses the FFT form
    with torch.no_grad():
        assert max_abs_diff(run_chunked(model, x, [1] * 150), model(x)) <= 1e-5


def test_frame_logits_are_the_step_path(model):
    x = audio(3, 25, 2)
    with torch.no_grad():
        logits = model.frame_logits(x)
        assert logits.shape == (3, len(KWS_CLASSES), 25)
        assert max_abs_diff(logits.softmax(1), model(x)) <= 1e-6


def test_classes_attributes_and_size(model):
    assert KWS_CLASSES == (*KEYWORDS, "_unknown_", "_silence_") and len(KWS_CLASSES) == 22
    assert (model.sample_rate, model.hop, model.latency) == (16000, 160, 240)
    assert (model.input_kind, model.output_kind) == ("audio", "events")
    assert sum(p.numel() for p in model.parameters()) <= 400_000
    info = describe("kws-spiking" if model.spiking else "kws")
    assert info["task"] == "kws" and info["latency_ms"] == 15.0


@pytest.mark.parametrize("spiking", [False, True])
def test_gradients_reach_every_parameter(spiking):
    """Training backpropagates through the FFT form of the memory and (spiking) the surrogate gradients."""
    torch.manual_seed(1)
    model = LMUFormerKWS(spiking=spiking, dim=32, blocks=1).train()
    logits = model.frame_logits(audio(2, 30, 4))
    target = torch.randint(len(KWS_CLASSES), (2, 30), generator=torch.Generator().manual_seed(0))
    torch.nn.functional.cross_entropy(logits, target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_spiking_model_passes_spikes_between_blocks():
    model = LMUFormerKWS(spiking=True, dim=32, blocks=1).eval()
    seen = []
    original = model.blocks[0].spikes_mlp.step

    def record(x, state):
        y, s = original(x, state)
        seen.append(y)
        return y, s

    model.blocks[0].spikes_mlp.step = record
    with torch.no_grad():
        model(audio(1, 20, 5))
    spikes = torch.cat(seen, -1)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0} and 0 < spikes.mean() < 1


def test_rejects_bad_input_and_config():
    model = LMUFormerKWS(dim=16, blocks=1)
    with pytest.raises(ValueError, match="mono audio"):
        model.step(torch.zeros(1, 2, HOP), model.init_state(1))
    with pytest.raises(ValueError, match="multiple of hop"):
        model.step(torch.zeros(1, 1, HOP + 1), model.init_state(1))
    with pytest.raises(ValueError, match="multiple of 8"):
        LMUFormerKWS(dim=12)
    with pytest.raises(ValueError, match="threshold"):
        LMUFormerKWS(threshold=0.0)


def test_config_round_trips_through_the_constructor():
    model = LMUFormerKWS(spiking=True, dim=32, blocks=1, threshold=0.7)
    rebuilt = load_model("kws-spiking", **model.config)
    assert rebuilt.config == model.config and rebuilt.spiking
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
