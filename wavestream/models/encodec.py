"""EnCodec 24 kHz, rebuilt from our streaming layers so official weights run chunk by chunk.

The architecture of Meta's causal ``encodec_24khz`` (Défossez et al., "High Fidelity Neural Audio
Compression"): a SEANet encoder (32 filters, ratios 8, 5, 4, 2 -> 320 samples per frame, 75 Hz, a
2-layer skip LSTM, 128-dim latents), a residual vector quantizer of 32 codebooks x 1024 (10 bits
each: 750 bit/s per codebook) and the mirror SEANet decoder. Bitrates 1.5, 3, 6, 12 and 24 kbps use
the first 2, 4, 8, 16 and 32 codebooks.

One module runs one of three ways (``mode``):
- ``roundtrip``: audio ``[B, 1, n * 320]`` -> audio ``[B, 1, n * 320]`` through the codes;
- ``encode``: audio -> codes ``[B, 32, n]`` (int64; codebooks past the stream's bitrate are -1);
- ``decode``: codes ``[B, k, n]`` (k <= 32; -1 = codebook not used) -> audio ``[B, 1, n * 320]``.

The bitrate is per stream, not per model: it is the quantizer's ``n_q`` state entry (``init_state``
uses ``bitrate``; ``configure_state`` sets it per stream), so streams at different bitrates share
one model and one batch. Weight norm is folded into plain conv weights by the converter.

Difference from the official model (see docs/models.md): its causal convs pad the stream start by
*reflecting* the first samples of each layer's input, which makes the first frames depend on up to
~100 ms of later input. A streaming model cannot see that input yet, so ours starts every conv
from zeros (the contract's ``init_state``). Everything else is the same computation: with the
official padding set to zeros, codes are identical and audio agrees to float rounding
(tests/models/test_encodec.py); with reflect padding the outputs differ only in a short start-up
transient.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import torch

from wavestream.streaming import AUDIO, TOKENS, CausalConv1d, State, StreamingModule, prefixed
from wavestream.streaming.quantize import ResidualVectorQuantizer
from wavestream.streaming.seanet import SEANetDecoder, SEANetEncoder

from .registry import register

BITRATES = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbps
MODES = ("roundtrip", "encode", "decode")


class RVQCodec(StreamingModule):
    """An encoder -> residual vector quantizer -> decoder codec run one of three ways (``mode``), with a
    per-stream bitrate. Subclasses build the halves: ``encoder`` maps audio ``[B, channels, n * frame]``
    to latents ``[B, dimension, n]`` (its ``hop`` is the frame), ``decoder`` maps latents back to audio
    and may lag it by ``decoder_delay`` samples (a whole number of frames, e.g. an inverse STFT's overlap).

    With ``float64_encoder``, ``step`` (and so ``forward``) runs the encoder and the code search in float64,
    on a cached float64 copy of the encoder's weights and a float64 encoder state: float32 convs round
    differently for chunks of different lengths, which can flip a code at a near tie. ``float64_decoder``
    does the same for the decoder (audio back in the codes' float32), for a decoder that sums over the
    whole stream, where float32 rounding would add up. Training calls ``encoder``, ``quantizer.quantize``
    and ``decoder`` directly and stays float32."""

    #: what a stream's start params may set: the bitrate (kbps) and which way the model runs
    stream_params = ("bitrate", "mode")
    #: the params that live in a stream's state (``configure_state``), not in the model's config
    state_params = ("bitrate",)
    #: encode / decode in float64 when streaming (see the class docstring)
    float64_encoder: bool = False
    float64_decoder: bool = False

    def __init__(self, encoder: StreamingModule, decoder: StreamingModule, mode: str, bitrate: float,
                 dimension: int, n_q: int, codebook_size: int, sample_rate: int, bitrates: Sequence[float],
                 dead_code_threshold: float, decoder_delay: int = 0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.sample_rate = mode, sample_rate
        self.encoder, self.decoder = encoder, decoder
        self.frame_size = self.encoder.hop
        if decoder_delay % self.frame_size:
            raise ValueError(f"decoder_delay must be whole frames of {self.frame_size}, got {decoder_delay}")
        self.frame_rate = math.ceil(sample_rate / self.frame_size)
        self.codebooks, self.codebook_size = n_q, codebook_size
        self.bits_per_codebook = math.log2(codebook_size)
        self.bitrates = tuple(float(b) for b in bitrates)
        # every offered bitrate must be a whole number of codebooks; training drops quantizers to these
        offered = [self.n_q_for(b) for b in self.bitrates]
        self.quantizer = ResidualVectorQuantizer(dimension, n_q, codebook_size, default_n_q=self.n_q_for(bitrate),
                                                 dropout_choices=offered, dead_code_threshold=dead_code_threshold)
        self.bitrate = float(bitrate)
        self.input_kind = TOKENS if mode == "decode" else AUDIO
        self.output_kind = TOKENS if mode == "encode" else AUDIO
        self.hop = 1 if mode == "decode" else self.frame_size
        self.out_per_in = {"roundtrip": Fraction(1), "encode": Fraction(1, self.frame_size),
                           "decode": Fraction(self.frame_size)}[mode]
        # output delay in input steps: samples (roundtrip and encode), token frames (decode). Encode too: the
        # audio up to sample t needs the codes of the frame holding t + decoder_delay, so a stream's end
        # pushes that much more audio through (a token file then holds every frame its audio needs)
        self.latency = {"roundtrip": decoder_delay, "encode": decoder_delay,
                        "decode": decoder_delay // self.frame_size}[mode]
        self._parts = {"roundtrip": ("encoder", "quantizer", "decoder"), "encode": ("encoder", "quantizer"),
                       "decode": ("decoder",)}[mode]
        self._float64_copies: dict[str, tuple[tuple | None, StreamingModule]] = {}  # see _float64_copy

    # -- bitrates -----------------------------------------------------------------------------------
    def n_q_for(self, bitrate: float) -> int:
        """Codebooks for ``bitrate`` kbps; ValueError unless it is one of ``bitrates``."""
        if isinstance(bitrate, bool) or not isinstance(bitrate, int | float) or float(bitrate) not in self.bitrates:
            offered = ", ".join(f"{b:g}" for b in self.bitrates)
            raise ValueError(f"bitrate must be one of {offered} (kbps), got {bitrate!r}")
        n_q = float(bitrate) * 1000 / (self.frame_rate * self.bits_per_codebook)
        if n_q != int(n_q) or not 1 <= n_q <= self.codebooks:
            raise ValueError(f"{bitrate:g} kbps is not a whole number of codebooks (1..{self.codebooks})")
        return int(n_q)

    def bitrate_of(self, n_q: int) -> float:
        """Nominal kbps of ``n_q`` codebooks (what a token file's header gives back as a bitrate)."""
        return n_q * self.frame_rate * self.bits_per_codebook / 1000

    def stream_codebooks(self, params: Mapping[str, Any]) -> int:
        """Codebooks per frame of a stream with ``params``: what an encode stream sends and a decode
        stream takes (its ``bitrate``, else the model's)."""
        return self.n_q_for(params.get("bitrate", self.bitrate))

    def configure_state(self, state: State, params: Mapping[str, Any]) -> State:
        """A copy of ``state`` with its streams set to ``params`` (``bitrate``); ValueError for bad values."""
        unknown = sorted(set(params) - set(self.state_params))
        if unknown:
            raise ValueError(f"not a stream state param: {unknown}")
        state = dict(state)
        if "bitrate" in params:
            n_q = self.n_q_for(params["bitrate"])
            if "quantizer.n_q" in state:  # a decoder takes whatever codebooks it is sent
                state["quantizer.n_q"] = torch.full_like(state["quantizer.n_q"], n_q)
        return state

    # -- streaming ------------------------------------------------------------------------------------
    def init_state(self, batch: int = 1, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """Only the parts this mode runs carry state; it is floating point even when the input is codes."""
        if dtype is not None and not dtype.is_floating_point:
            dtype = None
        state: State = {}
        for name in self._parts:
            part_dtype = torch.float64 if self._in_float64(name) else dtype
            state.update(prefixed(getattr(self, name).init_state(batch, device, part_dtype), name))
        return state

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        if self.mode == "decode":
            if x.dim() != 3 or x.is_floating_point():
                raise ValueError(f"decode expects integer codes [batch, codebooks, frames], got {x.dtype} "
                                 f"{tuple(x.shape)}")
            codes = x
        else:
            if x.dim() != 3 or x.shape[1] != self.encoder.channels:
                raise ValueError(f"{type(self).__name__} expects audio [batch, {self.encoder.channels}, time], "
                                 f"got {tuple(x.shape)}")
            self.check_length(x)
            latents = self._step_part("encoder", x, state, new_state)
            codes = self.step_child("quantizer", latents, state, new_state)
            if self.mode == "encode":
                return codes, new_state
        latents = self.quantizer.decode(codes)
        return self._step_part("decoder", latents, state, new_state).to(latents.dtype), new_state

    def _in_float64(self, name: str) -> bool:
        return (name == "encoder" and self.float64_encoder) or (name == "decoder" and self.float64_decoder)

    def _step_part(self, name: str, x: torch.Tensor, state: State, new_state: State) -> torch.Tensor:
        """Step the encoder or the decoder: as it is, or on its float64 copy (``float64_encoder``: the
        quantizer then searches float64 residuals; ``float64_decoder``: float64 audio)."""
        if not self._in_float64(name):
            return self.step_child(name, x, state, new_state)
        keys = self._child_keys(name, getattr(self, name))  # the copy has the same state keys
        part_state = {k: state[full].double() if state[full].is_floating_point() else state[full]
                      for k, full in keys.items()}
        y, part_state = self._float64_copy(name).step(x.double(), part_state)
        new_state.update({keys[k]: v for k, v in part_state.items()})
        return y

    def _float64_copy(self, name: str) -> StreamingModule:
        """A float64 copy of the part ``name``, remade whenever one of its tensors changes."""
        part = getattr(self, name)
        tensors = _tensors(part)
        # every in-place write (optimizer step, load_state_dict) bumps a tensor's version, and a move or a
        # replaced tensor changes its storage; tensors made under inference mode have no version: no cache
        key = None if any(t.is_inference() for t in tensors) else \
            tuple((t._version, t.data_ptr(), t.device) for t in tensors)
        cached = self._float64_copies.get(name)
        if key is None or cached is None or cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable outside inference mode
                copied = copy.deepcopy(part).double().requires_grad_(False)
                for module in copied.modules():
                    if type(module) is CausalConv1d and module.conv.groups == 1 and module.stride == 1:
                        _MatmulCausalConv1d.convert(module)
            cached = (key, copied)
            if key is not None:
                self._float64_copies[name] = cached
        return cached[1]


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """The parameters and buffers of ``module`` and its descendants; a plain walk, as this runs every step
    (``parameters()`` and ``buffers()`` take ~20 us for the codec's encoder, this ~4)."""
    tensors, stack = [], [module]
    while stack:
        m = stack.pop()
        tensors += [t for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]
        stack += m._modules.values()
    return tensors


class _MatmulCausalConv1d(CausalConv1d):
    """A ``CausalConv1d`` of a float64 encoder copy, computed as one matrix product over every frame of every
    stream. PyTorch has no oneDNN kernel for float64 convs, and its fallback took 3-40x the float32 time on
    32 streams of 1-5 frames (measured); the product takes 0.2-1.2x for one stream's 20 ms step (no
    oneDNN set-up per call), 1-4x on such batches."""

    @staticmethod
    def convert(module: CausalConv1d) -> None:
        module.__class__ = _MatmulCausalConv1d  # in place: the copy keeps its weights and state keys
        # [taps * in, out], tap-major as ``step`` stacks its input
        module.matrix = module.conv.weight.permute(2, 1, 0).reshape(-1, module.conv.out_channels).contiguous()

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        c = self.conv
        full = torch.cat([state["prev"], x], dim=-1) if self.context else x
        frames, dilation = x.shape[-1], c.dilation[0]
        columns = torch.cat([full[..., k * dilation:k * dilation + frames] for k in range(c.kernel_size[0])], dim=1)
        rows = columns.transpose(1, 2).reshape(-1, columns.shape[1])
        y = rows @ self.matrix if c.bias is None else torch.addmm(c.bias, rows, self.matrix)
        y = y.view(x.shape[0], frames, c.out_channels).transpose(1, 2)
        return y, {"prev": full[..., full.shape[-1] - self.context:]}


class EncodecStreaming(RVQCodec):
    """A SEANet + RVQ codec; the defaults are EnCodec 24 kHz. Other configurations (rate, ratios, widths,
    codebooks, bitrates) make other codecs of the same family. ``weight_norm=True``,
    ``dead_code_threshold`` and ``quantizer.quantize`` (EMA codebooks, quantizer dropout over the
    offered bitrates) are there for training one."""

    sample_rate = 24000

    def __init__(self, mode: str = "roundtrip", bitrate: float = 6.0, channels: int = 1, dimension: int = 128,
                 n_filters: int = 32, ratios: Sequence[int] = (8, 5, 4, 2), lstm_layers: int = 2, n_q: int = 32,
                 codebook_size: int = 1024, sample_rate: int = 24000, bitrates: Sequence[float] = BITRATES,
                 weight_norm: bool = False, dead_code_threshold: float = 2.0, encoder_lstm_layers: int | None = None):
        seanet = dict(channels=channels, dimension=dimension, n_filters=n_filters, ratios=ratios,
                      weight_norm=weight_norm)
        # an encoder without LSTM computes the same latents bit for bit however a stream is cut
        encoder_lstm = lstm_layers if encoder_lstm_layers is None else encoder_lstm_layers
        super().__init__(SEANetEncoder(**seanet, lstm_layers=encoder_lstm),
                         SEANetDecoder(**seanet, lstm_layers=lstm_layers), mode=mode, bitrate=bitrate,
                         dimension=dimension, n_q=n_q, codebook_size=codebook_size, sample_rate=sample_rate,
                         bitrates=bitrates, dead_code_threshold=dead_code_threshold)


@register("encodec_24khz", task="codec",
          description="EnCodec 24 kHz (official architecture, streaming; bring the official weights), "
                      "1.5-24 kbps, modes roundtrip/encode/decode")
def build_encodec_24khz(**config) -> EncodecStreaming:
    return EncodecStreaming(**config)
