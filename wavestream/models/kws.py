"""Keyword spotting: LMUFormer and spiking LMUFormer, one 10 ms frame per step (models ``kws``, ``kws-spiking``).

After "LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units" (Liu et al.),
made strictly streaming:

    audio [B, 1, T] @ 16 kHz
      -> log-mel (25 ms window, 10 ms hop; no utterance normalization)       [B, n_mels, T/160]
      -> patch embedding: four CAUSAL convs, kernel 3 (the paper's padding 1 looked one frame ahead
         per conv; here each conv only looks back), channel layer norm, GELU / LIF
      -> ``blocks`` x LMU block (pre-norm residual):
           token mixer   u = ReLU(W_u x), m = LMUMemory(u) (Legendre window of ``theta`` frames),
                         h = W_h [m; x]                 (no feedback of h or m: the memory is LTI)
           channel mixer MLP d -> mlp_ratio*d -> d
      -> layer norm, per-frame linear head -> K class logits per frame.

``LMUMemory`` trains in its parallel (FFT) form on whole clips and streams in its chunked closed
form with the same weights; a single 10 ms step costs a few small matmuls. In the spiking variant
(``spiking=True``) every linear map reads spikes: LIF neurons (explicit membrane state, surrogate
gradients) sit after the embedding convs, in front of each mixer, inside the MLP and in front of
the head (with ``lif_learn_decay`` each neuron learns its own membrane decay: the parametric LIF);
the residual stream between blocks stays real-valued (membrane shortcuts), and the LMU memory
integrates ReLU(W_u spikes).

``step`` returns per-frame class posteriors (softmax) ``[B, K, T/160]``; ``frame_logits(x)`` the
logits of a whole batch from a zero state (the training path: the same code as ``step``). Frame
``k`` covers samples ``[(k + 1) * 160 - 400, (k + 1) * 160)``: its label is what was said by the
end of its hop. ``event_detector()`` turns posteriors into debounced keyword events per stream.

Latency: 240 samples = 15 ms (one window minus one hop, as for the STFT models; there is no
lookahead), so a sound is reflected in the posteriors at most one 25 ms window after it starts.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from wavestream.data.corpora import KEYWORDS
from wavestream.streaming import AUDIO, EVENTS, LIF, CausalConv1d, ChannelLayerNorm, LMUMemory, State, StreamingModule
from wavestream.streaming.conv import frame_linear, frame_product
from wavestream.streaming.melspec import LogMelSpectrogram

from .registry import register

UNKNOWN, SILENCE = "_unknown_", "_silence_"
KWS_CLASSES: tuple[str, ...] = (*KEYWORDS, UNKNOWN, SILENCE)
SAMPLE_RATE, WINDOW, HOP = 16000, 400, 160


# The helpers below keep a 10 ms step cheap: there the arithmetic costs less than Python's calls around
# it (~100 ops of 1-2 us each), so stateless layers are applied directly rather than through step_child.

def pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-1 conv (a per-frame linear map); on one frame as a matrix product: conv1d's setup costs
    several times the work there. Longer inputs go through the module (and so through its hooks:
    ``evaluate.kws.OpCounter`` counts whole clips)."""
    if x.shape[-1] == 1:
        return frame_product(conv, x)
    return conv(x)


#: inputs up to this many values take PyTorch's own GELU kernel (see ``gelu``); it is slower from ~16k
NATIVE_GELU_MAX = 8192


def gelu(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x)`` (the exact, erf form). On a contiguous float CPU tensor F.gelu calls oneDNN, which
    spends ~5 us setting up whatever the size; PyTorch's own kernel, which it takes for a non-contiguous
    input, needs ~1 us for a frame. So a small input (a streaming step's) goes in as a transposed view of
    its memory (non-contiguous, the same values in the same places) and the result is viewed back: ~2 us.
    Both kernels compute the exact GELU (they differ by rounding, ~1e-7 relative). Inputs that need a
    gradient keep F.gelu (as_strided's backward is slow)."""
    n = x.numel()
    if n > NATIVE_GELU_MAX or n % 2 or x.requires_grad or not x.is_cpu or not x.is_contiguous():
        return F.gelu(x)
    return F.gelu(x.as_strided((n // 2, 2), (1, n // 2))).as_strided(x.shape, x.stride())


def lif_frame(lif: LIF, x: torch.Tensor, state: State, new_state: State, key: str) -> torch.Tensor:
    """One frame through ``lif`` (membrane at ``key`` in the states) -> its spikes."""
    spikes, new_state[key] = lif.frame(x, state[key])
    return spikes


def activation(owner: StreamingModule, name: str, x: torch.Tensor, state: State, new_state: State) -> torch.Tensor:
    """The ``_Activation`` child ``name`` of ``owner``: GELU (stateless, applied directly), or its LIF."""
    return owner.step_child(f"{name}.lif", x, state, new_state) if owner.spiking else gelu(x)


class _Activation(StreamingModule):
    """GELU for the ANN, a LIF neuron (spikes, membrane state ``v``) for the spiking model."""

    def __init__(self, channels: int, spiking: bool, decay: float, threshold: float, slope: float,
                 learn_decay: bool):
        super().__init__()
        self.lif = LIF(channels, decay, threshold, slope, learn_decay) if spiking else None

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.lif is None:
            return gelu(x), {}
        new_state: State = {}
        return self.step_child("lif", x, state, new_state), new_state


class LMUBlock(StreamingModule):
    """Pre-norm residual block: LMU token mixer, then MLP channel mixer (``[B, d, T]`` -> same)."""

    def __init__(self, dim: int, memory_channels: int, memory_order: int, theta: float, mlp_ratio: int,
                 dropout: float, spiking: bool, lif: dict[str, Any]):
        super().__init__()
        self.spiking = spiking
        self.norm_memory = ChannelLayerNorm(dim)
        self.norm_mlp = ChannelLayerNorm(dim)
        if spiking:  # the mixers read spikes
            self.spikes_memory = LIF(dim, **lif)
            self.spikes_mlp = LIF(dim, **lif)
        # kernel-1 convs are per-frame linear maps: causal by construction, no state
        self.memory_in = nn.Conv1d(dim, memory_channels, 1)
        self.memory = LMUMemory(memory_channels, memory_order, theta)
        self.memory_out = nn.Conv1d(memory_channels * memory_order + dim, dim, 1)
        self.mlp_in = nn.Conv1d(dim, mlp_ratio * dim, 1)
        self.mlp_activation = _Activation(mlp_ratio * dim, spiking, **lif)
        self.mlp_out = nn.Conv1d(mlp_ratio * dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        h = self.norm_memory.normalize(x)
        if self.spiking:
            h = self.step_child("spikes_memory", h, state, new_state)
        m = self.step_child("memory", torch.relu(pointwise(self.memory_in, h)), state, new_state)
        x = self._residual(x, pointwise(self.memory_out, torch.cat([m, h], dim=1)))
        h = self.norm_mlp.normalize(x)
        if self.spiking:
            h = self.step_child("spikes_mlp", h, state, new_state)
        h = activation(self, "mlp_activation", pointwise(self.mlp_in, h), state, new_state)
        return self._residual(x, pointwise(self.mlp_out, h)), new_state

    def frame(self, x: torch.Tensor, state: State, new_state: State, prefix: str) -> torch.Tensor:
        """``step`` on one frame ``[B, dim]`` in inference (see ``LMUFormerKWS.step``): the same ops and values
        on ``[B, C]`` tensors; reads this block's state at ``prefix`` (its path in the model) and records
        the new entries in ``new_state``."""
        layers = self._modules  # (nn.Module's attribute lookup costs ~0.3 us a layer)
        h = layers["norm_memory"].normalize_frame(x)
        if self.spiking:
            h = lif_frame(layers["spikes_memory"], h, state, new_state, prefix + "spikes_memory.v")
        key = prefix + "memory.m"
        u = torch.relu(frame_linear(layers["memory_in"], h))
        m = new_state[key] = layers["memory"].frame(u, state[key])
        x = x + frame_linear(layers["memory_out"], torch.cat([m.flatten(1), h], dim=1))
        h = layers["norm_mlp"].normalize_frame(x)
        if self.spiking:
            h = lif_frame(layers["spikes_mlp"], h, state, new_state, prefix + "spikes_mlp.v")
        h = frame_linear(layers["mlp_in"], h)
        h = lif_frame(layers["mlp_activation"].lif, h, state, new_state, prefix + "mlp_activation.lif.v") \
            if self.spiking else gelu(h)
        return x + frame_linear(layers["mlp_out"], h)

    def _residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + (self.dropout(y) if self.training else y)  # an idle module call costs as much as the add


class LMUFormerKWS(StreamingModule):
    """Audio ``[B, 1, n * 160]`` at 16 kHz -> class posteriors ``[B, len(KWS_CLASSES), n]``."""

    sample_rate = SAMPLE_RATE
    hop = HOP
    latency = WINDOW - HOP
    out_per_in = Fraction(1, HOP)  # one posterior frame per hop
    input_kind, output_kind = AUDIO, EVENTS
    classes = KWS_CLASSES
    #: what a stream's start params may override (the detector's thresholds; weights stay the same)
    stream_params = ("smooth_frames", "threshold", "refractory_frames", "min_frames")
    #: all of them per stream: a stream's detector takes them, so they never need a model instance of their own
    detector_params = stream_params
    #: silence fed after a stream's end (the pipeline, the evaluation): a keyword's posteriors rise 0.1-0.3 s
    #: after the word and an event must last ``min_frames``, so a clip cut right after its word gave the
    #: shipped kws 13 % of the real digits as events, against 47 % with 0.3-1 s of silence after them
    end_silence_s = 0.5

    def __init__(self, spiking: bool = False, n_mels: int = 40, dim: int = 128, blocks: int = 2,
                 memory_channels: int = 8, memory_order: int = 32, theta: float = 128.0, mlp_ratio: int = 2,
                 dropout: float = 0.0, lif_decay: float = 0.5, lif_threshold: float = 1.0, lif_slope: float = 5.0,
                 lif_learn_decay: bool = False, smooth_frames: int = 20, threshold: float = 0.6,
                 refractory_frames: int = 30, min_frames: int = 1):
        super().__init__()
        if dim % 8 or dim < 8:
            raise ValueError(f"dim must be a positive multiple of 8 (the embedding grows d/8 -> d), got {dim}")
        if blocks < 1 or mlp_ratio < 1:
            raise ValueError(f"need blocks >= 1 and mlp_ratio >= 1, got {blocks}, {mlp_ratio}")
        self.spiking = spiking
        self.detector_config = dict(smooth_frames=smooth_frames, threshold=threshold,
                                    refractory_frames=refractory_frames, min_frames=min_frames)
        # the constructor keys (what a model card's "config" holds), spiking aside: the model name says it
        self.config = dict(n_mels=n_mels, dim=dim, blocks=blocks, memory_channels=memory_channels,
                           memory_order=memory_order, theta=theta, mlp_ratio=mlp_ratio, dropout=dropout,
                           lif_decay=lif_decay, lif_threshold=lif_threshold, lif_slope=lif_slope,
                           lif_learn_decay=lif_learn_decay,
                           **self.detector_config)
        KeywordDetector.check_config(**self.detector_config)
        lif = dict(decay=lif_decay, threshold=lif_threshold, slope=lif_slope, learn_decay=lif_learn_decay)
        self.features = LogMelSpectrogram(SAMPLE_RATE, WINDOW, HOP, n_mels)
        widths = [n_mels, dim // 8, dim // 4, dim // 2, dim]
        self.embed = nn.ModuleList(CausalConv1d(a, b, 3) for a, b in zip(widths, widths[1:], strict=False))
        self.embed_norms = nn.ModuleList(ChannelLayerNorm(b) for b in widths[1:])
        # the last embedding conv feeds the residual stream directly (no activation)
        self.embed_activations = nn.ModuleList(_Activation(b, spiking, **lif) for b in widths[1:-1])
        self.blocks = nn.ModuleList(LMUBlock(dim, memory_channels, memory_order, theta, mlp_ratio, dropout,
                                             spiking, lif) for _ in range(blocks))
        self.norm_head = ChannelLayerNorm(dim)
        if spiking:
            self.spikes_head = LIF(dim, **lif)
        self.head = nn.Conv1d(dim, len(KWS_CLASSES), 1)

    def _logits(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"kws expects mono audio [batch, 1, time], got shape {tuple(x.shape)}")
        self.check_length(x)
        new_state: State = {}
        h = self.step_child("features", x, state, new_state)
        for i, norm in enumerate(self.embed_norms):
            h = norm.normalize(self.step_child(f"embed.{i}", h, state, new_state))
            if i < len(self.embed_activations):
                h = activation(self, f"embed_activations.{i}", h, state, new_state)
        for i in range(len(self.blocks)):
            h = self.step_child(f"blocks.{i}", h, state, new_state)
        h = self.norm_head.normalize(h)
        if self.spiking:
            h = self.step_child("spikes_head", h, state, new_state)
        return pointwise(self.head, h), new_state

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() == 3 and x.shape[-1] == HOP and x.shape[1] == 1 and not (torch.is_grad_enabled() or self.training):
            return self._step_frame(x, state)
        logits, new_state = self._logits(x, state)
        return logits.softmax(dim=1), new_state

    def _step_frame(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``step`` on one 10 ms frame in inference (no gradient, eval mode: what a server's stream does):
        the same layers, ops and values as ``_logits``, on ``[B, C]`` tensors instead of ``[B, C, 1]`` and
        without ``step_child``'s walk, as each op's call costs more than its arithmetic on one frame (0.135 ms
        instead of 0.21, ``benchmarks/kws_step.py --cpu-time``). Whole clips, and any step that may need a
        gradient, take ``_logits``; the streaming tests compare the two (one-frame chunks against the offline
        pass), and a test checks this path against ``_logits`` frame by frame."""
        layers = self._modules  # (nn.Module's attribute lookup costs ~0.3 us a layer)
        new_state: State = {}
        h, new_state["features.prev"] = layers["features"].frame(x, state["features.prev"])
        activations = list(layers["embed_activations"])
        for i, (conv, norm) in enumerate(zip(layers["embed"], layers["embed_norms"], strict=True)):
            key = f"embed.{i}.prev"
            h, new_state[key] = conv.frame(h, state[key])
            h = norm.normalize_frame(h)
            if i < len(activations):
                h = lif_frame(activations[i].lif, h, state, new_state, f"embed_activations.{i}.lif.v") \
                    if self.spiking else gelu(h)
        for i, block in enumerate(layers["blocks"]):
            h = block.frame(h, state, new_state, f"blocks.{i}.")
        h = layers["norm_head"].normalize_frame(h)
        if self.spiking:
            h = lif_frame(layers["spikes_head"], h, state, new_state, "spikes_head.v")
        # [B, K, 1] as on the other path: softmax over the last dim is another kernel (other roundings)
        return frame_linear(layers["head"], h)[..., None].softmax(dim=1), new_state

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``[B, K, T // 160]`` of whole clips ``[B, 1, T]`` from a zero state (training)."""
        return self._logits(x, self.init_state(x.shape[0], x.device, x.dtype))[0]

    def event_detector(self, rows: int = 1, frame_rate: float = SAMPLE_RATE / HOP, **params) -> KeywordDetector:
        """A fresh detector for one stream (``rows`` channels) with this model's thresholds, or the
        stream's own (``params``: any of ``detector_params``)."""
        return KeywordDetector(KWS_CLASSES, len(KEYWORDS), rows=rows, frame_rate=frame_rate,
                               **{**self.detector_config, **params})


class KeywordDetector:
    """Per-frame posteriors of one stream -> debounced keyword events, chunking-independent.

    Per row (channel): the posteriors are averaged over the last ``smooth_frames`` frames (zeros
    before the stream starts). An event opens when the best keyword's smoothed posterior reaches
    ``threshold`` and closes when that keyword's falls below it again; it is reported when it
    closes (or at ``flush``) as ``{"label", "start", "end", "score"}`` with start/end in seconds
    of the stream (the first frame above the threshold and the end of the last one) and score the
    peak smoothed posterior, provided it stayed above the threshold for at least ``min_frames``
    frames: a shorter one is dropped and leaves no trace (no refractory period). A keyword said on
    its own holds its posterior for a while after the word (the training targets hold it 0.3 s);
    keyword-like stretches of running speech mostly rise and fall within a few frames, so a
    minimum length removes many of their alarms at a given threshold. After a reported event no
    new one opens for ``refractory_frames`` frames. The state (the last frames, the open event,
    the refractory count) lives here, frame by frame, so any split of the stream into ``push``
    calls gives the same events as one call.
    """

    def __init__(self, classes: tuple[str, ...], keywords: int, rows: int = 1, frame_rate: float = 100.0,
                 smooth_frames: int = 20, threshold: float = 0.6, refractory_frames: int = 30, min_frames: int = 1):
        self.check_config(smooth_frames, threshold, refractory_frames, min_frames)
        self.classes, self.keywords, self.rows, self.frame_rate = classes, keywords, rows, frame_rate
        self.smooth_frames, self.threshold, self.refractory_frames = smooth_frames, threshold, refractory_frames
        self.min_frames = min_frames
        self.reset()

    @staticmethod
    def check_config(smooth_frames: int, threshold: float, refractory_frames: int, min_frames: int = 1) -> None:
        # smooth_frames sizes a per-stream buffer that a client chooses: bounded (10 s of frames)
        if not 1 <= smooth_frames <= 1000 or not 0 < threshold <= 1 or refractory_frames < 0:
            raise ValueError(f"need 1 <= smooth_frames <= 1000, 0 < threshold <= 1, refractory_frames >= 0; got "
                             f"{smooth_frames}, {threshold}, {refractory_frames}")
        if isinstance(min_frames, bool) or not isinstance(min_frames, int | np.integer) or not 1 <= min_frames <= 1000:
            raise ValueError(f"need an integer 1 <= min_frames <= 1000, got {min_frames!r}")

    def reset(self) -> None:
        self.frame = 0  # stream index of the next frame
        self._recent = np.zeros((self.smooth_frames - 1, self.rows, self.keywords))
        self._open: list[dict[str, Any] | None] = [None] * self.rows
        self._quiet = [0] * self.rows  # refractory frames left per row

    def push(self, posteriors: np.ndarray) -> list[dict[str, Any]]:
        """Posteriors ``[frames, rows, classes]`` (the next frames of the stream) -> events closed in them."""
        posteriors = np.asarray(posteriors, dtype=np.float64)
        if posteriors.ndim != 3 or posteriors.shape[1:] != (self.rows, len(self.classes)):
            raise ValueError(f"posteriors must be [frames, {self.rows}, {len(self.classes)}], "
                             f"got {posteriors.shape}")
        if not len(posteriors):
            return []
        history = np.concatenate([self._recent, posteriors[..., :self.keywords]])
        # each smoothed frame averages the same values in the same order however the stream was split
        smoothed = sliding_window_view(history, self.smooth_frames, axis=0).mean(-1)  # [frames, rows, keywords]
        self._recent = history[len(history) - (self.smooth_frames - 1):]
        found = []  # (frame, row, event): reported in stream order, rows in order within a frame
        for row in range(self.rows):
            found += [(frame, row, event) for frame, event in self._advance(row, smoothed[:, row])]
        self.frame += len(smoothed)
        return [event for _, _, event in sorted(found, key=lambda f: f[:2])]

    def flush(self) -> list[dict[str, Any]]:
        """End of the stream: report the events still open (those long enough)."""
        events = [self._close(row) for row in range(self.rows) if self._open[row] is not None]
        return [e for e in events if e is not None]

    def _advance(self, row: int, scores: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
        """Run one row's state machine over its smoothed frames ``[n, keywords]``: frame by frame in
        effect, but jumping over the frames where nothing can change (no event open and nothing
        reaching the threshold; the refractory count running down; an open event staying above)."""
        events, i, n = [], 0, len(scores)
        candidates = np.flatnonzero(scores.max(axis=1) >= self.threshold)
        while i < n:
            current = self._open[row]
            if current is not None:
                track = scores[i:, current["index"]]
                below = np.flatnonzero(track < self.threshold)
                held = int(below[0]) if len(below) else n - i  # frames that keep it open
                if held:
                    current["last"] = self.frame + i + held - 1
                    current["score"] = max(current["score"], float(track[:held].max()))
                i += held
                if i < n:  # it falls below here: closed on this frame
                    event = self._close(row)
                    if event is not None:
                        events.append((i, event))
                    i += 1
            elif self._quiet[row]:
                skip = min(self._quiet[row], n - i)
                self._quiet[row] -= skip
                i += skip
            else:
                k = int(np.searchsorted(candidates, i))
                if k == len(candidates):
                    break
                i = int(candidates[k])
                best = int(scores[i].argmax())
                self._open[row] = {"index": best, "first": self.frame + i, "last": self.frame + i,
                                   "score": float(scores[i, best])}
                i += 1
        return events

    def _close(self, row: int) -> dict[str, Any] | None:
        """Close the row's open event: the event to report, or None when it was too short."""
        current, self._open[row] = self._open[row], None
        if current["last"] - current["first"] + 1 < self.min_frames:
            return None
        self._quiet[row] = self.refractory_frames
        event = {"label": self.classes[current["index"]], "start": round(current["first"] / self.frame_rate, 4),
                 "end": round((current["last"] + 1) / self.frame_rate, 4), "score": round(current["score"], 4)}
        if self.rows > 1:
            event["channel"] = row
        return event


@register("kws", task="kws",
          description="keyword spotting (LMUFormer), 16 kHz, one 10 ms frame per step, 20 keywords -> events")
def build_kws(**config) -> LMUFormerKWS:
    return LMUFormerKWS(spiking=False, **config)


@register("kws-spiking", task="kws",
          description="keyword spotting (spiking LMUFormer, LIF neurons), 16 kHz, 10 ms steps, 20 keywords -> events")
def build_kws_spiking(**config) -> LMUFormerKWS:
    return LMUFormerKWS(spiking=True, **config)
