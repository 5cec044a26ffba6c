import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.quantize import UNUSED, ResidualVectorQuantizer
from wavestream.streaming.state import stack_states
from wavestream.streaming.testing import check_all, partitions


def make_rvq(**kw):
    torch.manual_seed(0)
    return ResidualVectorQuantizer(4, n_q=6, codebook_size=16, **kw).eval()


@settings(max_examples=15, deadline=None)
@given(default_n_q=st.integers(1, 6), frames=st.integers(2, 24), data=st.data())
def test_rvq_streaming_codes_identical(default_n_q, frames, data):
    x = torch.randn(3, 4, frames, generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    # integer codes: an error <= 1e-5 means identical
    check_all(lambda: make_rvq(default_n_q=default_n_q), x, parts, t)


def test_codes_are_a_prefix_across_n_q_and_unused_codebooks_are_marked():
    rvq = make_rvq()
    x = torch.randn(2, 4, 7)
    full = rvq.encode(x, 6)
    for k in range(1, 7):
        codes = rvq.encode(x, k)
        assert torch.equal(codes, full[:, :k])
    state = rvq.init_state(2)
    state["n_q"] = torch.tensor([2, 5])
    codes, _ = rvq.step(x, state)
    assert codes.shape == (2, 6, 7)
    assert torch.equal(codes[0, :2], full[0, :2]) and (codes[0, 2:] == UNUSED).all()
    assert torch.equal(codes[1, :5], full[1, :5]) and (codes[1, 5:] == UNUSED).all()
    # each row decodes as if alone at its own n_q
    assert torch.allclose(rvq.decode(codes)[1:], rvq.decode(full[1:, :5]))


def test_streams_at_different_n_q_share_a_batch():
    rvq = make_rvq()
    xs = [torch.randn(1, 4, 5) for _ in range(3)]
    states = []
    for k in (1, 3, 6):
        s = rvq.init_state(1)
        s["n_q"] = torch.tensor([k])
        states.append(s)
    batch, _ = rvq.step(torch.cat(xs), stack_states(states))
    for i, (x, s) in enumerate(zip(xs, states, strict=True)):
        assert torch.equal(batch[i:i + 1], rvq.step(x, s)[0])


def test_decode_is_the_sum_of_the_chosen_vectors_and_error_shrinks_with_n_q():
    rvq = make_rvq()
    codes = torch.tensor([[[3, UNUSED], [5, 1]]])  # [1, 2 codebooks, 2 frames]
    z = rvq.decode(codes)
    assert torch.allclose(z[0, :, 0], rvq.embed[0, 3] + rvq.embed[1, 5])
    assert torch.allclose(z[0, :, 1], rvq.embed[1, 1])
    x = torch.randn(1, 4, 200)
    errors = [(rvq.decode(rvq.encode(x, k)) - x).pow(2).mean().item() for k in (1, 3, 6)]
    assert errors[0] > errors[1] > errors[2]
    for bad in (torch.full((1, 1, 2), 16), torch.full((1, 1, 2), -2), torch.zeros(1, 7, 2, dtype=torch.long)):
        with pytest.raises(ValueError):
            rvq.decode(bad)
    with pytest.raises(ValueError, match="n_q"):
        rvq.encode(x, 7)


def test_training_learns_codebooks_by_ema_and_restarts_dead_codes():
    torch.manual_seed(1)
    rvq = ResidualVectorQuantizer(2, n_q=2, codebook_size=8, decay=0.8, dead_code_threshold=0.5).train()
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    rvq.embed[:] = 100.0  # far from the data: only the first-batch init and the EMA can bring it close
    errors = []
    for _ in range(40):
        x = (centres[torch.randint(4, (256,))] + 0.1 * torch.randn(256, 2)).T[None]  # [1, 2, 256]
        out = rvq.quantize(x, n_q=1)
        errors.append(out.commitment.item())
    assert bool(rvq.initialized)
    assert errors[-1] < 0.05
    # every code ends up near data: none stays dead far away
    assert (torch.cdist(rvq.embed[0], centres).min(dim=1).values < 1.0).all()
    assert out.latents.shape == x.shape and out.codes.shape == (1, 1, 256)


def test_quantizer_dropout_draws_n_q_per_example_with_straight_through_gradient():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, n_q=8, codebook_size=16, dropout_choices=(2, 4, 8)).train()
    x = torch.randn(64, 4, 3, requires_grad=True)
    out = rvq.quantize(x)
    assert set(out.n_q.tolist()) == {2, 4, 8}
    for row, k in enumerate(out.n_q.tolist()):
        assert (out.codes[row, :k] >= 0).all() and (out.codes[row, k:] == UNUSED).all()
    out.latents.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))
    rvq.eval()
    assert (rvq.quantize(x.detach()).n_q == 8).all()  # no dropout outside training
    with pytest.raises(ValueError, match="n_q"):
        ResidualVectorQuantizer(4, n_q=8, codebook_size=16, dropout_choices=(9,))
