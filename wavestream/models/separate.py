"""Causal speech separation: Conv-TasNet (Luo & Mesgarani 2019) built from our streaming layers.

    mixture [B, 1, T]
      -> encoder: causal conv, N filters of L samples, stride L/2, ReLU         -> w [B, N, frames]
      -> separator: cLN -> 1x1 N->B -> R repeats of X blocks -> PReLU -> 1x1 B->S*N -> sigmoid
         block x: 1x1 B->H, PReLU, cLN, depthwise causal conv (kernel P, dilation 2^x), PReLU, cLN,
                  1x1 H->B, residual
      -> masks [B, S, N, frames] * w
      -> decoder: causal transposed conv N->1 (L, stride L/2), overlap-add    -> sources [B, S, T]

Every normalization is cumulative (frame t sees frames 0..t), every conv looks back only, so the
model streams one encoder hop at a time. The blocks keep only the residual path (no skip outputs):
the skip sums cost a third of the separator's multiply-adds for a small gain in the paper.

Latency: the encoder frame that ends at sample t starts L samples earlier, and the decoder writes it
back at once, so output sample t + L/2 answers input t; with the hop that makes L samples of
algorithmic latency (4 ms for the default L = 64 at 16 kHz). L = 32 (2 ms) costs twice the frames
per second; the shipped model card says which was trained and why.
"""

from __future__ import annotations

import torch
from torch import nn

from wavestream.streaming import (
    AUDIO,
    SOURCES,
    CausalConv1d,
    CausalConvTranspose1d,
    CumulativeLayerNorm,
    State,
    StreamingModule,
)
from wavestream.streaming.conv import frame_linear

from .registry import register


class _PReLUGrad(torch.autograd.Function):
    """PReLU with one slope ``a``, forward as ``torch.prelu``, with a backward of a few vectorized passes: torch's
    own CPU backward kernel takes ~7 ms on a [4, 256, 2000] block, ~15 % of a training step of this model."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, a)
        return torch.prelu(x, a)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, a = ctx.saved_tensors
        # d/dx is 1 where x > 0, else a (as torch's, a at 0): lerp's ends are exact; d/da: sum of grad * min(x, 0)
        # (sign().clamp_() is the step function: heaviside and where are not vectorized, ~20x slower)
        grad_x = torch.lerp(grad * a, grad, x.sign().clamp_(min=0))
        grad_a = (grad * x.clamp(max=0)).sum().reshape(a.shape)  # sum(): cascaded, as accurate as torch's
        return grad_x, grad_a


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same values) whose backward is ``_PReLUGrad``'s while autograd records."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_parameters == 1 and torch.is_grad_enabled():
            return _PReLUGrad.apply(x, self.weight)
        return super().forward(x)


class SeparationBlock(StreamingModule):
    """One TCN block: 1x1 conv, PReLU, cLN, dilated depthwise causal conv, PReLU, cLN, 1x1 conv, residual."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation: int):
        super().__init__()
        self.channels = channels
        self.expand = CausalConv1d(channels, hidden, 1)
        self.act1 = PReLU()
        self.norm1 = CumulativeLayerNorm(hidden)
        self.depthwise = CausalConv1d(hidden, hidden, kernel_size, dilation=dilation, groups=hidden)
        self.act2 = PReLU()
        self.norm2 = CumulativeLayerNorm(hidden)
        self.project = CausalConv1d(hidden, channels, 1)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        h = self.act1(self.step_child("expand", x, state, new_state))
        h = self.step_child("norm1", h, state, new_state)
        h = self.act2(self.step_child("depthwise", h, state, new_state))
        h = self.step_child("norm2", h, state, new_state)
        return x + self.step_child("project", h, state, new_state), new_state


def _param(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module.<name>`` read from its parameter dict (nn.Module's attribute lookup costs ~0.3 us, ~150 a chunk);
    a parametrized or otherwise replaced one through the module."""
    p = module._parameters
    return p[name] if name in p else getattr(module, name)


def _cln_rows(norm: CumulativeLayerNorm, x: torch.Tensor, state: State, keys: tuple[str, str, str],
              new_state: State) -> torch.Tensor:
    """``CumulativeLayerNorm.step``'s no-grad path on channels-last ``x [B, frames, C]``: the same float32 frame
    statistics (over the contiguous channels here) merged in float64 by the same formulas, on ``[B, frames, 1]``
    tensors that broadcast against ``x`` (no views between them); ``keys``: the layer's mean, var and count
    entries, read and written as ``step`` keeps them. About 30 calls on tiny tensors, ~1 us each: most of a
    block's time on a short chunk."""
    frames, channels = x.shape[1], x.shape[2]
    mean_key, var_key, count_key = keys
    mean0, count0 = state[mean_key], state[count_key]
    dtype = mean0.dtype
    frame_mean = x.mean(-1, keepdim=True)  # [B, frames, 1]
    frame_m2 = (x - frame_mean).square_().sum(-1, keepdim=True)
    var0, n0 = state[var_key], count0
    if x.shape[0] > 1:  # the [B] entries against [B, frames, 1] (one stream's [1] broadcasts as it is)
        mean0, var0, n0 = mean0.view(-1, 1, 1), var0.view(-1, 1, 1), n0.view(-1, 1, 1)
    if dtype != torch.float64:
        mean0, var0 = mean0.double(), var0.double()
    deviation = torch.sub(frame_mean, mean0)  # float64 (type promotion: the same values as .double() first)
    s1 = deviation.cumsum(1)
    s2 = torch.addcmul(frame_m2, deviation, deviation, value=channels).cumsum_(1)
    counts = _value_counts(frames, channels, x.device) + n0
    mean = torch.addcdiv(mean0, s1, counts, value=channels)
    m2 = torch.addcdiv(s2.add_(var0 * n0), s1.square(), counts, value=-channels * channels)
    var = m2.div_(counts).clamp_min_(0)
    scale = (var + norm.eps).rsqrt_()
    y = (x - mean.to(x.dtype)).mul_(scale.to(x.dtype))
    weight = _param(norm, "weight")
    if weight is not None:
        y = torch.addcmul(_param(norm, "bias"), y, weight)
    mean, var = mean[:, -1, 0], var[:, -1, 0]
    new_state[mean_key] = mean if dtype == torch.float64 else mean.to(dtype)
    new_state[var_key] = var if dtype == torch.float64 else var.to(dtype)
    new_state[count_key] = count0 + frames * channels
    return y


_COUNTS: dict = {}


def _value_counts(frames: int, channels: int, device) -> torch.Tensor:
    """``[C, 2C, .., frames * C]`` as a float64 column ``[frames, 1]`` (values each frame of a chunk has seen
    on top of the stream's count), made once per size."""
    key = (frames, channels, device)
    counts = _COUNTS.get(key)
    if counts is None:
        counts = _COUNTS[key] = torch.arange(channels, (frames + 1) * channels, channels, device=device,
                                             dtype=torch.float64)[:, None]
    return counts


def _taps_rows(conv: nn.Conv1d, full: torch.Tensor, frames: int) -> torch.Tensor:
    """The depthwise conv of ``CausalConv1d.step`` (its taps: a multiply-add per tap, in ``_taps_sum``'s order)
    over its channels-first window ``full [B, C, context + frames]``, as channels-last rows ``[B, frames, C]``:
    the frames each tap reads are copied out in one strided view (kernel x frames x C values, not the whole
    context), then summed on contiguous channels (on a few frames, channels-first ops run row by row: ~2x)."""
    weight, bias, dilation = _param(conv, "weight"), _param(conv, "bias"), conv.dilation[0]
    kernel, length = weight.shape[-1], full.shape[-1]
    taps = weight[:, 0].t()  # [kernel, C]
    batch, channels = full.shape[0], full.shape[1]
    read = full.as_strided((batch, kernel, frames, channels), (channels * length, dilation, 1, length),
                           full.storage_offset()).contiguous()  # [B, kernel, frames, C]
    y = read[:, 0] * taps[0] if bias is None else torch.addcmul(bias, read[:, 0], taps[0])
    for k in range(1, kernel):
        y = y.addcmul_(read[:, k], taps[k])
    return y


class ConvTasNet(StreamingModule):
    input_kind, output_kind = AUDIO, SOURCES
    #: one mixture in: the stream pipeline averages a multichannel client to one row (2 sources out, not 2 per channel)
    mixdown = True

    def __init__(self, sources: int = 2, sample_rate: int = 16000, filters: int = 256, window: int = 64,
                 bottleneck: int = 128, hidden: int = 256, kernel_size: int = 3, blocks: int = 8,
                 repeats: int = 2):
        super().__init__()
        if window % 2:
            raise ValueError(f"window must be even (the stride is window / 2), got {window}")
        self.sources, self.filters, self.sample_rate = sources, filters, sample_rate
        stride = window // 2
        self.encoder = CausalConv1d(1, filters, window, stride=stride, bias=False)
        self.input_norm = CumulativeLayerNorm(filters)
        self.bottleneck = CausalConv1d(filters, bottleneck, 1)
        self.blocks = nn.ModuleList(SeparationBlock(bottleneck, hidden, kernel_size, 2 ** x)
                                    for _ in range(repeats) for x in range(blocks))
        self.mask_act = PReLU()
        self.masks = CausalConv1d(bottleneck, sources * filters, 1)
        self.decoder = CausalConvTranspose1d(filters, 1, window, stride=stride, bias=False)
        self.hop = stride
        self.latency = window - stride  # the decoder's output lags the encoder's frame by its overlap
        # _step_rows covers this configuration: depthwise convs as taps, a decoder window of two hops
        self._rows_path = all(block.depthwise.taps for block in self.blocks) and window == 2 * stride

    #: a step of B streams x frames takes ``_step_rows`` while that is at most this many rows (the chunks of a
    #: stream, of a small batch of them) with autograd off in eval mode (a server's streams); 0: never. Above
    #: it oneDNN's convolutions beat MKL's GEMM on the rows (B = 32 at 32 ms: ~1.2x as long on the rows); ``forward``
    #: (an offline pass) and every step that may need a gradient keep ``_step_layers``
    rows_limit = 256

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self._check_input(x)
        if 0 < x.shape[0] * x.shape[-1] <= self.rows_limit * self.hop and self._rows_path and not self.training \
                and not torch.is_grad_enabled():
            return self._step_rows(x, state)
        return self._step_layers(x, state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``step`` from a zero state, layer by layer whatever its length."""
        self._check_input(x)
        return self._step_layers(x, self.init_state(x.shape[0], x.device, x.dtype))[0]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"separate expects mono audio [batch, 1, time], got shape {tuple(x.shape)}")
        self.check_length(x)

    def _step_layers(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The model's step as its layers' own ``step`` calls, ``[B, channels, frames]`` throughout."""
        new_state: State = {}
        batch, frames = x.shape[0], x.shape[-1] // self.hop
        w = torch.relu(self.step_child("encoder", x, state, new_state))  # [B, N, frames]
        h = self.step_child("input_norm", w, state, new_state)
        h = self.step_child("bottleneck", h, state, new_state)
        for i in range(len(self.blocks)):
            h = self.step_child(f"blocks.{i}", h, state, new_state)
        masks = torch.sigmoid(self.step_child("masks", self.mask_act(h), state, new_state))
        masked = masks.view(batch, self.sources, self.filters, frames) * w[:, None]
        # the decoder runs each (stream, source) pair as its own row; its overlap-add state is kept
        # as [B, S, overlap] so that the state's first dimension is the stream, as batching needs
        partial = state["decoder.partial"]
        y, decoded = self.decoder.step(masked.reshape(batch * self.sources, self.filters, frames),
                                       {"partial": partial.reshape(batch * self.sources, 1, -1)})
        new_state["decoder.partial"] = decoded["partial"].reshape(partial.shape)
        return y.view(batch, self.sources, -1), new_state

    def _step_rows(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``_step_layers`` for a stream's chunk (or a few streams'): the same layers, formulas and state, on
        channels-last rows ``[B * frames, channels]``. On a few frames the ~200 calls of a step, not their
        multiply-adds, set its cost, so there are fewer of them and they run on the layout their kernels are
        quick on: each 1x1 conv is one ``addmm`` over all rows through the weight's kept ``[in, out]`` view
        (``frame_linear``; MKL's GEMM on the conv's few columns per stream takes ~3x as long at 5-8 frames), the
        encoder one over its windows, the decoder one plus its overlap-add as two slices; the cumulative layer
        norms reduce over contiguous channels (``_cln_rows``), the depthwise convs sum their taps on rows
        (``_taps_rows``); no ``step_child`` walk, no per-layer state dicts, parameters read from the modules'
        dicts. The state is ``_step_layers``'s, entry by entry and in its layout, so a stream may switch paths
        from one chunk to the next. The values are the same up to float32 rounding (the GEMMs' and the
        channel reductions' summation order, ~1e-7 on the shipped weights): tests hold the two paths together
        and to the streaming contract."""
        m = self._modules
        batch, frames, hop = x.shape[0], x.shape[-1] // self.hop, self.hop
        rows, sources, filters = batch * frames, self.sources, self.filters
        keys = self.__dict__.get("_rows_keys")
        if keys is None or len(keys[0]) != len(m["blocks"]):
            def norm(name):
                return f"{name}.mean", f"{name}.var", f"{name}.count"
            keys = self.__dict__["_rows_keys"] = (
                tuple((norm(f"blocks.{i}.norm1"), f"blocks.{i}.depthwise.prev", norm(f"blocks.{i}.norm2"))
                      for i in range(len(m["blocks"]))),
                tuple(k for k, v in self.init_state(1).items() if not v.numel()),  # the 1x1 convs' empty `prev`
                norm("input_norm"))
        block_keys, empty_keys, input_norm = keys
        # the 1x1 convs keep no past: their [B, C, 0] entries go on as they came
        new_state: State = {k: state[k] for k in empty_keys}
        # encoder: each frame's window of the past `context` samples and this chunk, one row each
        encoder = m["encoder"]
        full = torch.cat([state["encoder.prev"], x], dim=-1)  # [B, 1, context + samples]
        new_state["encoder.prev"] = full[..., full.shape[-1] - encoder.context:]
        encoder_conv = encoder._modules["conv"]
        windows = full.unfold(-1, encoder_conv.kernel_size[0], hop).reshape(rows, -1)
        w = frame_linear(encoder_conv, windows).relu_()  # [B * frames, N]
        h = _cln_rows(m["input_norm"], w.view(batch, frames, filters), state, input_norm, new_state)
        h = frame_linear(m["bottleneck"]._modules["conv"], h.view(rows, -1))  # [B * frames, bottleneck]
        for block, (norm1, prev_key, norm2) in zip(m["blocks"]._modules.values(), block_keys, strict=True):
            b = block._modules
            e = torch.prelu(frame_linear(b["expand"]._modules["conv"], h), _param(b["act1"], "weight"))
            e = _cln_rows(b["norm1"], e.view(batch, frames, -1), state, norm1, new_state)  # [B, frames, H]
            depthwise = b["depthwise"]
            full = torch.cat([state[prev_key], e.transpose(1, 2)], dim=-1)  # [B, H, context + frames]
            new_state[prev_key] = full[..., full.shape[-1] - depthwise.context:]
            e = torch.prelu(_taps_rows(depthwise._modules["conv"], full, frames), _param(b["act2"], "weight"))
            e = _cln_rows(b["norm2"], e, state, norm2, new_state)
            h = h + frame_linear(b["project"]._modules["conv"], e.view(rows, -1))
        h = torch.prelu(h, _param(m["mask_act"], "weight"))
        masks = torch.sigmoid(frame_linear(m["masks"]._modules["conv"], h))
        masked = masks.view(batch, frames, sources, filters) * w.view(batch, frames, 1, filters)
        # decoder: each (frame, source)'s whole window [B, frames, S, L]; output frame j is the first hop of
        # window j plus the rest of window j - 1 (the window is two hops) or, for the first, the kept partial sums
        decoder = m["decoder"]._modules["convtr"]
        columns = torch.mm(masked.view(rows * sources, filters), _param(decoder, "weight").view(filters, -1))
        columns = columns.view(batch, frames, sources, -1).transpose(1, 2)  # [B, S, frames, L]
        partial = state["decoder.partial"]  # [B, S, L - hop]
        tails = torch.cat([partial[:, :, None], columns[:, :, :-1, hop:]], dim=2)
        y = (columns[..., :hop] + tails).reshape(batch, sources, frames * hop)
        bias = _param(decoder, "bias")
        if bias is not None:
            y = y + bias
        new_state["decoder.partial"] = columns[:, :, -1, hop:]
        return y, new_state

    def init_state(self, batch: int = 1, device=None, dtype=None) -> State:
        state = super().init_state(batch, device, dtype)
        partial = state["decoder.partial"]
        state["decoder.partial"] = partial.new_zeros(batch, self.sources, partial.shape[-1])
        return state


@register("separate", task="separate",
          description="causal two-talker separation, 16 kHz, 4 ms latency (Conv-TasNet, cumulative LN)")
def build_separate(**config) -> ConvTasNet:
    return ConvTasNet(**config)
