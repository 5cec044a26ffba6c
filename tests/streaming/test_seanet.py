import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.seanet import ResidualUnit, SEANetDecoder, SEANetEncoder, SkipLSTM
from wavestream.streaming.testing import check_all, partitions

SMALL = dict(dimension=6, n_filters=4, ratios=(4, 2), lstm_layers=1)


@settings(max_examples=10, deadline=None)
@given(kernel=st.integers(1, 5), dilation=st.integers(1, 3), shortcut=st.booleans(), frames=st.integers(2, 20),
       data=st.data())
def test_residual_unit_streaming(kernel, dilation, shortcut, frames, data):
    x = torch.randn(3, 4, frames, generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))

    def make():
        torch.manual_seed(kernel)
        return ResidualUnit(4, kernel, dilation, conv_shortcut=shortcut)
    check_all(make, x, parts, t)


@settings(max_examples=10, deadline=None)
@given(layers=st.sampled_from([1, 2]), units=st.integers(3, 10), weight_norm=st.booleans(), data=st.data())
def test_seanet_encoder_streaming(layers, units, weight_norm, data):
    torch.manual_seed(layers)
    x = torch.randn(3, 1, units * 8)
    parts = data.draw(partitions(units))
    t = data.draw(st.integers(0, units * 8 - 1))

    def make():
        torch.manual_seed(0)
        return SEANetEncoder(residual_layers=layers, weight_norm=weight_norm, **SMALL)
    check_all(make, x, parts, t)


@settings(max_examples=10, deadline=None)
@given(layers=st.sampled_from([1, 2]), frames=st.integers(2, 12), final=st.sampled_from([None, "tanh"]),
       data=st.data())
def test_seanet_decoder_streaming(layers, frames, final, data):
    torch.manual_seed(frames)
    z = torch.randn(3, 6, frames)
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))

    def make():
        torch.manual_seed(0)
        return SEANetDecoder(residual_layers=layers, final_activation=final, **SMALL)
    check_all(make, z, parts, t)


def test_seanet_shapes_hop_and_state():
    enc, dec = SEANetEncoder(**SMALL), SEANetDecoder(**SMALL)
    assert (enc.hop, enc.out_per_in, enc.latency) == (8, 1 / 8, 0)
    assert (dec.hop, dec.out_per_in, dec.latency) == (1, 8, 0)
    z = enc(torch.randn(2, 1, 40))
    assert z.shape == (2, 6, 5) and dec(z).shape == (2, 1, 40)
    # widths double per encoder stage and halve per decoder stage
    assert enc.downsample[1].conv.out_channels == 16 and dec.upsample[0].convtr.out_channels == 8
    assert {"lstm.lstm.h", "lstm.lstm.c", "input_conv.prev"} <= set(enc.init_state(1))
    with pytest.raises(ValueError, match="multiple of hop"):
        enc(torch.zeros(1, 1, 12))
    with pytest.raises(ValueError, match=r"\[batch, 6, frames\]"):
        dec(torch.zeros(1, 5, 3))


def test_weight_norm_is_a_reparametrization():
    torch.manual_seed(0)
    plain = SEANetEncoder(**SMALL)
    torch.manual_seed(0)
    normed = SEANetEncoder(weight_norm=True, **SMALL)
    assert any("parametrizations.weight.original1" in k for k in normed.state_dict())
    x = torch.randn(1, 1, 48)
    # weight norm starts at g = |v|, i.e. the same weights
    assert torch.allclose(plain(x), normed(x), atol=1e-6)


def test_skip_lstm_adds_its_input():
    lstm = SkipLSTM(3, 1)
    x = torch.randn(1, 3, 5)
    assert torch.allclose(lstm(x) - x, lstm.lstm(x))
