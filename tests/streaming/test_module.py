from fractions import Fraction

import pytest
import torch

from wavestream.streaming.conv import CausalConv1d, CausalConvTranspose1d
from wavestream.streaming.module import StreamingModule, StreamingSequential
from wavestream.streaming.norm import CumulativeLayerNorm
from wavestream.streaming.recurrent import GRU
from wavestream.streaming.stft import ISTFT, STFT
from wavestream.streaming.testing import check_all


def test_sequential_hop_composes_strides():
    chain = StreamingSequential(CausalConv1d(1, 2, 4, stride=2), CausalConv1d(2, 2, 3, stride=3))
    assert chain.hop == 6 and chain.out_per_in == Fraction(1, 6)
    x = torch.randn(2, 1, 6 * 7)
    assert chain(x).shape == (2, 2, 7)
    check_all(lambda: chain, x, [1, 2, 4], 19)
    with pytest.raises(ValueError, match="multiple of hop=6"):
        chain(torch.randn(1, 1, 8))


def test_sequential_hop_through_upsampling_and_stft():
    # 2x down, 4x up: an odd number of 4x-upsampled samples is fine, the first conv still needs 2 inputs
    up = StreamingSequential(CausalConv1d(1, 2, 2, stride=2), CausalConvTranspose1d(2, 1, 4, stride=4),
                             CausalConv1d(1, 1, 3, stride=3))
    assert up.out_per_in == Fraction(2, 3) and up.hop == 6
    spec = StreamingSequential(STFT(32, 8), ISTFT(32, 8))
    assert spec.hop == 8 and spec.out_per_in == 1
    x = torch.randn(2, 1, 48)
    check_all(lambda: up, x, [2, 1, 5], 20)


def test_sequential_latency_in_model_samples():
    class Lookahead(StreamingModule):
        latency = 2

        def step(self, x, state):
            return x, state

    chain = StreamingSequential(CausalConv1d(1, 1, 2, stride=2), Lookahead())
    assert chain.latency == 4  # 2 frames of a 2x-downsampled signal


def test_sequential_state_keys_are_prefixed_paths():
    chain = StreamingSequential(CausalConv1d(3, 4, 3), CumulativeLayerNorm(4), GRU(4, 5))
    state = chain.init_state(2)
    assert set(state) == {"layers.0.prev", "layers.1.mean", "layers.1.var", "layers.1.count", "layers.2.h"}
    x = torch.randn(2, 3, 12)
    check_all(lambda: chain, x, [3, 4, 5], 6)


def test_forward_is_step_from_zero_state():
    torch.manual_seed(0)
    chain = StreamingSequential(CausalConv1d(2, 3, 5, dilation=2), GRU(3, 3))
    x = torch.randn(1, 2, 9)
    y, _ = chain.step(x, chain.init_state(1))
    assert torch.equal(chain(x), y)


def test_step_child_follows_a_replaced_child_and_skips_stateless_ones():
    """step_child keeps a table per child path; a child replaced in place gets its own keys and state."""
    chain = StreamingSequential(CausalConv1d(2, 2, 3), CumulativeLayerNorm(2))
    x = torch.randn(1, 2, 6)
    chain.step(x, chain.init_state(1))  # fills the table
    chain.layers[1] = GRU(2, 3)
    state = chain.init_state(1)
    assert set(state) == {"layers.0.prev", "layers.1.h"}
    y, new = chain.step(x, state)
    assert y.shape == (1, 3, 6) and set(new) == set(state)
    assert chain._child_keys("layers.1", chain.layers[1]) == {"h": "layers.1.h"}

    class Stateless(StreamingModule):
        def step(self, x, state):
            assert state == {}
            return x * 2, {}

    chain.layers[1] = Stateless()
    y, new = chain.step(x, chain.init_state(1))
    assert set(new) == {"layers.0.prev"} and torch.equal(y, 2 * chain.layers[0](x))
