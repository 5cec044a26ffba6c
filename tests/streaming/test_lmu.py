import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.lmu import DIRECT_MAX, LMUMemory, lmu_matrices
from wavestream.streaming.testing import check_all, max_abs_diff, partitions, run_chunked


def recurrence(mod: LMUMemory, u: torch.Tensor) -> torch.Tensor:
    """Reference: m[t] = Ad m[t-1] + Bd u[t], step by step in float64 (numpy: fast small ops)."""
    a, b = mod._power_of_two(0).numpy(), mod.impulse_response(1)[:, 0].numpy()
    x = u.double().numpy()
    m = np.zeros((*u.shape[:2], mod.order))
    out = np.empty((*u.shape[:2], mod.order, u.shape[-1]))
    for t in range(u.shape[-1]):
        m = m @ a.T + b * x[..., t:t + 1]
        out[..., t] = m
    return torch.from_numpy(out).reshape(u.shape[0], -1, u.shape[-1])


@settings(max_examples=15, deadline=None)
@given(channels=st.integers(1, 3), order=st.integers(1, 24), theta=st.floats(2, 200), length=st.integers(1, 500),
       data=st.data())
def test_parallel_and_chunked_closed_forms_agree_for_any_length(channels, order, theta, length, data):
    mod = LMUMemory(channels, order, theta)
    u = torch.randn(2, channels, length, generator=torch.Generator().manual_seed(length))
    reference = recurrence(mod, u)
    parallel = mod.parallel(u)
    chunked = run_chunked(mod, u, data.draw(partitions(length, max_parts=12)))
    assert parallel.shape == (2, channels * order, length) and parallel.dtype == torch.float32
    assert max_abs_diff(parallel.double(), reference) <= 1e-5
    assert max_abs_diff(chunked.double(), reference) <= 1e-5
    assert max_abs_diff(chunked, parallel) <= 1e-5


def test_direct_and_fft_chunk_paths_agree_with_the_recurrence():
    mod = LMUMemory(2, 32, 50.0)
    u = torch.randn(3, 2, 1 + DIRECT_MAX + DIRECT_MAX + 1 + 300)
    units = [1, DIRECT_MAX, DIRECT_MAX + 1, 300]  # direct, direct at its limit, FFT, FFT
    assert max_abs_diff(run_chunked(mod, u, units).double(), recurrence(mod, u)) <= 1e-5



def test_frame_is_the_step_of_one_frame():
    mod = LMUMemory(3, 16, 20.0)
    u, m = torch.randn(2, 3), torch.randn(2, 3, 16)
    want, state = mod.step(u[..., None], {"m": m})
    new = mod.frame(u, m)
    assert torch.equal(new, state["m"]) and torch.equal(new.flatten(1), want[..., 0])

@settings(max_examples=15, deadline=None)
@given(channels=st.integers(1, 3), order=st.integers(1, 16), theta=st.floats(2, 64), frames=st.integers(2, 40),
       data=st.data())
def test_lmu_memory_streaming(channels, order, theta, frames, data):
    u = torch.randn(3, channels, frames, generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    check_all(lambda: LMUMemory(channels, order, theta), u, parts, t)


def test_matrices_follow_voelker_2019():
    a, b = lmu_matrices(3, theta=2.0)
    expected_a = torch.tensor([[-1, -1, -1], [3, -3, -3], [-5, 5, -5]], dtype=torch.float64) / 2
    assert torch.equal(a, expected_a) and torch.equal(b, torch.tensor([1.0, -3.0, 5.0], dtype=torch.float64) / 2)


def test_memory_reconstructs_the_delayed_input():
    """The memory holds shifted-Legendre coefficients of the last theta steps: u(t - r*theta) = sum P_i(r) m_i(t)."""
    order, theta, r = 12, 60.0, 0.5
    mod = LMUMemory(1, order, theta)
    t = torch.arange(600, dtype=torch.float32)
    u = torch.sin(2 * math.pi * t / 150)[None, None]
    m = mod(u)[0].double().numpy()  # [order, T]
    p = np.array([np.polynomial.legendre.legval(2 * r - 1, np.eye(order)[i]) for i in range(order)])
    decoded = p @ m
    delay = int(r * theta)
    err = np.abs(decoded[300:] - u[0, 0, 300 - delay:600 - delay].numpy()).max()
    assert err < 0.05, err


def test_lmu_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="theta"):
        LMUMemory(1, 4, 0)
    with pytest.raises(ValueError, match=r"\[batch, 2, time\]"):
        LMUMemory(2, 4, 10)(torch.zeros(1, 1, 5))
    mod = LMUMemory(2, 4, 10)
    y, s = mod.step(torch.zeros(1, 2, 0), mod.init_state(1))
    assert y.shape == (1, 8, 0) and s["m"].shape == (1, 2, 4)
