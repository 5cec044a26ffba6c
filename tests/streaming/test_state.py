import pytest
import torch

from wavestream.streaming.state import (
    prefixed,
    reset_rows,
    select_rows,
    split_state,
    stack_states,
    state_batch_size,
    state_from_bytes,
    state_to,
    state_to_bytes,
    sub_state,
)


def _state(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"conv.prev": torch.randn(batch, 2, 3, generator=g), "norm.count": torch.arange(batch) * 7,
            "rnn.h": torch.randn(batch, 1, 4, generator=g, dtype=torch.float64)}


def test_stack_then_split_round_trips_rows():
    a, b = _state(1, 1), _state(2, 2)
    stacked = stack_states([a, b])
    assert state_batch_size(stacked) == 3
    parts = split_state(stacked, [1, 2])
    for part, orig in zip(parts, [a, b], strict=True):
        assert all(torch.equal(part[k], orig[k]) for k in orig)
    rows = split_state(stacked)
    assert len(rows) == 3 and torch.equal(rows[2]["rnn.h"], b["rnn.h"][1:])


def test_stack_rejects_mismatched_keys_and_split_rejects_bad_sizes():
    with pytest.raises(ValueError, match="different keys"):
        stack_states([_state(1), {"conv.prev": torch.zeros(1, 2, 3)}])
    with pytest.raises(ValueError, match="at least one"):
        stack_states([])
    with pytest.raises(ValueError, match="add up"):
        split_state(_state(3), [1, 1])
    with pytest.raises(ValueError, match="inconsistent batch"):
        state_batch_size({"a": torch.zeros(2, 1), "b": torch.zeros(3, 1)})


def test_select_rows_reorders():
    s = _state(4)
    picked = select_rows(s, [3, 0])
    assert torch.equal(picked["norm.count"], torch.tensor([21, 0]))
    assert torch.equal(picked["conv.prev"][1], s["conv.prev"][0])


def test_reset_rows_replaces_only_those_rows_and_copies():
    s = _state(3)
    fresh = {k: torch.zeros_like(v[:1]) for k, v in s.items()}
    out = reset_rows(s, [1], fresh)
    assert out["conv.prev"][1].abs().sum() == 0 and out["norm.count"].tolist() == [0, 0, 14]
    assert torch.equal(out["conv.prev"][0], s["conv.prev"][0])
    assert s["conv.prev"][1].abs().sum() > 0  # the input state is untouched
    assert all(torch.equal(reset_rows(s, [], fresh)[k], s[k]) for k in s)


def test_state_to_casts_floats_only():
    out = state_to(_state(2), dtype=torch.float16)
    assert out["conv.prev"].dtype == torch.float16 and out["rnn.h"].dtype == torch.float16
    assert out["norm.count"].dtype == torch.long


def test_bytes_round_trip_is_exact_including_shared_entries():
    s = _state(2)
    s["alias"] = s["conv.prev"]  # the same tensor twice must still serialize
    back = state_from_bytes(state_to_bytes(s))
    assert set(back) == set(s)
    for k in s:
        assert back[k].dtype == s[k].dtype and torch.equal(back[k], s[k])


def test_prefix_and_sub_state_are_inverse():
    s = _state(1)
    assert sub_state(prefixed(s, "enc.0"), "enc.0").keys() == s.keys()
    assert sub_state(s, "conv") == {"prev": s["conv.prev"]}
    assert sub_state(s, "con") == {}  # a prefix is a whole path component


def test_empty_states_of_stateless_modules():
    assert split_state({}, [1, 1]) == [{}, {}]
    assert stack_states([{}, {}]) == {}
    with pytest.raises(ValueError, match="no batch size"):
        state_batch_size({})
