import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.recurrent import GRU, LSTM, GroupedGRU, run_rnn
from wavestream.streaming.testing import check_all, partitions


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["gru", "lstm", "grouped"]), in_size=st.sampled_from([2, 4, 6]),
       hidden=st.sampled_from([4, 8]), layers=st.integers(1, 3), frames=st.integers(2, 20), data=st.data())
def test_recurrent_streaming(kind, in_size, hidden, layers, frames, data):
    torch.manual_seed(in_size * 100 + hidden + layers)
    make = {"gru": lambda: GRU(in_size, hidden, layers), "lstm": lambda: LSTM(in_size, hidden, layers),
            "grouped": lambda: GroupedGRU(in_size, hidden, groups=2, num_layers=layers)}[kind]
    x = torch.randn(3, in_size, frames)
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    check_all(make, x, parts, t)


def test_gru_matches_torch_gru_and_returns_its_final_state():
    torch.manual_seed(0)
    gru = GRU(3, 5, num_layers=2)
    x = torch.randn(2, 3, 7)
    y, state = gru.step(x, gru.init_state(2))
    ref_y, ref_h = gru.rnn(x.transpose(1, 2))
    assert y.shape == (2, 5, 7) and state["h"].shape == (2, 2, 5)
    assert torch.allclose(y, ref_y.transpose(1, 2)) and torch.allclose(state["h"], ref_h.transpose(0, 1))


def test_lstm_state_has_h_and_c():
    lstm = LSTM(3, 4, num_layers=2)
    state = lstm.init_state(5)
    assert set(state) == {"h", "c"} and state["c"].shape == (5, 2, 4)
    y, new = lstm.step(torch.randn(5, 3, 2), state)
    assert y.shape == (5, 4, 2) and not torch.equal(new["c"], state["c"])


def test_grouped_gru_groups_are_independent():
    torch.manual_seed(0)
    gg = GroupedGRU(4, 6, groups=2)
    x = torch.randn(1, 4, 9)
    x2 = x.clone()
    x2[:, 2:] = torch.randn(1, 2, 9)  # change only the second group's input
    y, y2 = gg(x), gg(x2)
    assert torch.equal(y[:, :3], y2[:, :3]) and not torch.allclose(y[:, 3:], y2[:, 3:])
    with pytest.raises(ValueError, match="divide"):
        GroupedGRU(5, 6, groups=2)


def test_recurrent_rejects_wrong_channels_and_accepts_empty_chunks():
    gru = GRU(3, 4)
    with pytest.raises(ValueError, match=r"\[batch, 3, time\]"):
        gru(torch.zeros(1, 2, 5))
    state = gru.init_state(2)
    y, new = gru.step(torch.zeros(2, 3, 0), state)
    assert y.shape == (2, 4, 0) and torch.equal(new["h"], state["h"])


@pytest.mark.parametrize("rows", [(1, 1), (3, 7), (16, 8), (2, 200)])
def test_lstm_small_calls_equal_torch_lstm(rows):
    """Calls under ``onednn_min_rows`` run our cells, larger ones torch's kernel: both give torch's
    result (outputs and states), in training and inference mode."""
    torch.manual_seed(1)
    lstm = LSTM(12, 16, num_layers=2)
    batch, frames = rows
    x = torch.randn(batch, 12, frames)
    state = {k: torch.randn_like(v) for k, v in lstm.init_state(batch).items()}
    for training in (True, False):
        lstm.train(training)
        y, new = lstm.step(x, state)
        ref_y, (ref_h, ref_c) = lstm.rnn(x.transpose(1, 2), (state["h"].transpose(0, 1).contiguous(),
                                                              state["c"].transpose(0, 1).contiguous()))
        assert torch.allclose(y, ref_y.transpose(1, 2), atol=1e-6)
        assert torch.allclose(new["h"], ref_h.transpose(0, 1), atol=1e-6)
        assert torch.allclose(new["c"], ref_c.transpose(0, 1), atol=1e-6)


@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_lstm_streaming_across_both_paths(data):
    """At inference, offline (one call of 4 x 80 rows: torch's oneDNN kernel) equals small streaming
    chunks (our cells), with every streaming check of the contract."""
    torch.manual_seed(2)
    x = torch.randn(4, 6, 80)
    assert x.shape[0] * x.shape[-1] >= LSTM.onednn_min_rows

    def make():
        return LSTM(6, 8, num_layers=2).eval()

    check_all(make, x, data.draw(partitions(80, max_parts=20)), data.draw(st.integers(0, 79)))



@pytest.mark.parametrize("kind", ["gru", "lstm", "grouped"])
def test_direct_kernel_call_equals_the_module_and_follows_swapped_weights(kind):
    """``run_rnn`` calls torch's kernel with the module's weight list: equal to the module's forward; when
    the weights are swapped (torch.func.functional_call) it goes through forward, which takes them."""
    torch.manual_seed(0)
    layer = {"gru": lambda: GRU(3, 4, num_layers=2), "lstm": lambda: LSTM(3, 4, num_layers=2),
             "grouped": lambda: GroupedGRU(4, 4, groups=2)}[kind]()
    for rnn in list(layer.rnns) if kind == "grouped" else [layer.rnn]:
        hidden = tuple(torch.randn(rnn.num_layers, 2, rnn.hidden_size) for _ in range(1 + (kind == "lstm")))
        x = torch.randn(2, 5, rnn.input_size)
        ref_y, ref_new = rnn(x, hidden[0] if len(hidden) == 1 else hidden)
        y, *new = run_rnn(rnn, x, hidden)
        assert torch.equal(y, ref_y)
        assert all(torch.equal(a, b) for a, b in zip(new, ref_new if kind == "lstm" else (ref_new,), strict=True))
    x = torch.randn(2, layer.input_size, 1)
    doubled = copy.deepcopy(layer)
    with torch.no_grad():
        for p in doubled.parameters():
            p.mul_(2)
        want = doubled(x)
        got = torch.func.functional_call(layer, dict(doubled.named_parameters()), (x,))
        assert not torch.allclose(want, layer(x))
        assert torch.equal(got, want)
        assert torch.equal(layer(x), layer(x))  # its own weights again afterwards
