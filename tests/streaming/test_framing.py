import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.framing import Framer


@settings(max_examples=40, deadline=None)
@given(hop=st.integers(1, 64), channels=st.integers(1, 3),
       sizes=st.lists(st.integers(0, 200), min_size=1, max_size=12))
def test_push_releases_whole_hops_in_order(hop, channels, sizes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((sum(sizes), channels)).astype(np.float32)
    framer = Framer(hop, channels)
    outs, pos = [], 0
    for n in sizes:
        y = framer.push(x[pos:pos + n])
        pos += n
        assert y.shape[1] == channels and len(y) % hop == 0 and y.dtype == np.float32
        outs.append(y)
        assert framer.pending < hop
    released = np.concatenate(outs)
    assert len(released) + framer.pending == len(x)
    tail, n_valid = framer.flush()
    assert n_valid == len(x) - len(released)
    assert len(tail) == (hop if n_valid else 0)
    assert np.array_equal(np.concatenate([released, tail[:n_valid]]), x)
    assert not tail[n_valid:].any()
    assert framer.frames_in == len(x) and framer.frames_out == len(released) + len(tail) and framer.pending == 0


def test_output_does_not_alias_input():
    framer = Framer(4, 1)
    x = np.ones((6, 1), np.float32)
    y = framer.push(x)
    x[:] = 7
    assert y.tolist() == [[1.0]] * 4
    assert framer.flush()[0][:2].tolist() == [[1.0], [1.0]]
    z = np.ones((8, 1), np.float32)
    y = framer.push(z)
    z[:] = 0
    assert y.sum() == 8


def test_reset_drops_pending():
    framer = Framer(10, 2)
    framer.push(np.ones((15, 2), np.float32))
    framer.reset()
    assert framer.pending == 0 and framer.frames_in == 0
    assert framer.flush()[1] == 0


@pytest.mark.parametrize("samples", [
    np.zeros((4, 2), np.float64), np.zeros((4, 2), np.int16), np.zeros(4, np.float32),
    np.zeros((4, 3), np.float32), np.zeros((1, 4, 2), np.float32), [[0.0, 0.0]],
])
def test_push_rejects_bad_samples(samples):
    with pytest.raises(ValueError):
        Framer(4, 2).push(samples)


@pytest.mark.parametrize("hop,channels", [(0, 1), (4, 0), (-1, 1), (2.0, 1), (4, True)])
def test_rejects_bad_config(hop, channels):
    with pytest.raises(ValueError):
        Framer(hop, channels)
