"""Residual vector quantizer (SoundStream / EnCodec RVQ) with a per-stream number of codebooks.

Latents ``[B, dim, T]`` -> codes ``[B, n_q, T]`` (int64): codebook ``q`` quantizes what codebooks
``0..q-1`` left over, so the first ``k`` codes of a frame do not depend on how many follow. That is
what lets one model serve several bitrates: a stream uses the first ``n_q`` codebooks.

Codes of codebooks a stream does not use are ``-1`` (``UNUSED``) and decode to nothing, so streams at
different bitrates share one batch. As a streaming module the quantizer maps latents to codes
frame by frame; its state is only ``n_q`` (int64 ``[B]``, codebooks in use per stream), which
``init_state`` sets to ``default_n_q``.

Training (``quantize``): nearest-codebook assignment with a straight-through gradient, a commitment
loss, codebooks learned by exponential moving averages (no gradient) with Laplace smoothing,
codebooks initialized from the first batch's vectors, dead codes (EMA count below a threshold)
restarted on random vectors of the batch, and quantizer dropout (each example draws its ``n_q``).
A fresh code (initialized or restarted) starts at the count of an average code (the vectors per
batch over the codebook size, never below the threshold), so it has the time an average code has to
be used before it counts as dead. Starting it at the threshold restarted a code at the very next
batch that did not pick it: with fewer vectors per batch than codes, nearly every code of a
codebook every step, so the codebooks never settled (a first codec run used 61 of 1024 codes).

Inference needs only ``embed``: weights written by ``inference_state_dict`` leave out the EMA
statistics (half the quantizer's bytes), and loading such weights restarts them as a fresh
codebook initialization would (every code at the threshold count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .module import StreamingModule
from .state import State

UNUSED = -1
#: buffers only training reads (the EMA statistics)
TRAINING_BUFFERS = ("embed_avg", "cluster_size")


@dataclass
class Quantized:
    """What ``ResidualVectorQuantizer.quantize`` returns (training)."""

    latents: torch.Tensor       # [B, dim, T] quantized latents (straight-through gradient to the input)
    codes: torch.Tensor         # [B, max n_q, T] int64, UNUSED beyond each example's n_q
    commitment: torch.Tensor    # scalar: mean squared distance of the input to its quantized value
    n_q: torch.Tensor           # [B] codebooks used per example


class ResidualVectorQuantizer(StreamingModule):
    """``n_q`` codebooks of ``codebook_size`` vectors of size ``dim``.

    Buffers (all learned by EMA, none by gradient): ``embed`` ``[n_q, K, dim]``, ``embed_avg`` (EMA of
    the sums of assigned vectors), ``cluster_size`` ``[n_q, K]`` (EMA of the counts), ``initialized``.
    ``dropout_choices`` are the ``n_q`` values quantizer dropout draws from (default ``1..n_q``).
    """

    def __init__(self, dim: int, n_q: int, codebook_size: int, default_n_q: int | None = None,
                 decay: float = 0.99, epsilon: float = 1e-5, dead_code_threshold: float = 2.0,
                 dropout: bool = True, dropout_choices: Sequence[int] | None = None):
        super().__init__()
        if n_q < 1 or codebook_size < 1:
            raise ValueError(f"need n_q >= 1 and codebook_size >= 1, got {n_q}, {codebook_size}")
        self.dim, self.n_q, self.codebook_size = dim, n_q, codebook_size
        self.default_n_q = n_q if default_n_q is None else self.check_n_q(default_n_q)
        self.decay, self.epsilon, self.dead_code_threshold = decay, epsilon, dead_code_threshold
        self.dropout = dropout
        self.dropout_choices = tuple(self.check_n_q(k) for k in (dropout_choices or range(1, n_q + 1)))
        self.register_buffer("embed", torch.randn(n_q, codebook_size, dim))
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(n_q, codebook_size))
        self.register_buffer("initialized", torch.tensor(False))
        self._exact: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # see _exact_codebooks

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # inference weights carry no EMA statistics: restart them as _init_codebooks does
        # (load_state_dict hands every module its own copy of the dict, so the caller's is untouched)
        if prefix + "embed" in state_dict and not any(prefix + b in state_dict for b in TRAINING_BUFFERS):
            embed = state_dict[prefix + "embed"]
            state_dict[prefix + "embed_avg"] = embed * self.dead_code_threshold
            state_dict[prefix + "cluster_size"] = torch.full(embed.shape[:2], self.dead_code_threshold,
                                                             dtype=embed.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check_n_q(self, n_q: int) -> int:
        if isinstance(n_q, bool) or not isinstance(n_q, int) or not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be an integer between 1 and {self.n_q}, got {n_q!r}")
        return n_q

    # -- streaming: latents -> codes ------------------------------------------------------------------
    def own_state(self, batch, device, dtype) -> State:
        return {"n_q": torch.full((batch,), self.default_n_q, dtype=torch.long, device=device)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Codes ``[B, n_q (all codebooks), T]``; a stream's codebooks past its ``n_q`` are UNUSED."""
        codes = self.encode(x, state["n_q"])
        return F.pad(codes, (0, 0, 0, self.n_q - codes.shape[1]), value=UNUSED), {"n_q": state["n_q"]}

    # -- inference --------------------------------------------------------------------------------------
    def _nearest(self, q: int, residual: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """Index of the nearest vector of codebook ``q`` for each frame of ``residual [B, dim, T]`` -> ``[B, T]``.

        ``exact`` (inference) compares in float64: a float32 matrix product rounds a row differently
        depending on how many rows it multiplies, which would let near ties fall differently in a chunk,
        a whole signal or a batch; in float64 that rounding is ~1e-16, far below any real gap, so equal
        latents give equal codes. Training (``exact=False``) takes float32, several times faster."""
        if exact:
            embeds, norms = self._exact_codebooks()
            embed, norm = embeds[q], norms[q]
        else:
            embed = self.embed[q]
            norm = embed.pow(2).sum(1)
        flat = residual.transpose(1, 2).reshape(-1, self.dim).to(embed.dtype)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed.t() + norm[None]
        return dist.argmin(dim=-1).view(residual.shape[0], residual.shape[2])

    def _exact_codebooks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The codebooks in float64 and their squared norms, made once per version of ``embed`` (every
        in-place change, an EMA step or a load, bumps the version): converting them per frame would
        cost a stream more than the search itself."""
        if self.embed.is_inference():  # made under inference mode: no version counter to key a cache on
            embed = self.embed.double()
            return embed, embed.pow(2).sum(-1)
        key = (self.embed._version, self.embed.data_ptr(), self.embed.device)
        cached = self._exact
        if cached is None or cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable outside inference mode
                embed = self.embed.detach().double()
                cached = self._exact = (key, embed, embed.pow(2).sum(-1))
        return cached[1], cached[2]

    def _lookup(self, q: int, codes: torch.Tensor) -> torch.Tensor:
        """Vectors of codebook ``q`` for ``codes [B, T]`` -> ``[B, dim, T]``; UNUSED codes give zeros."""
        used = codes >= 0
        vectors = F.embedding(codes.clamp(min=0), self.embed[q]).transpose(1, 2)
        return vectors * used[:, None].to(vectors.dtype)

    def encode(self, x: torch.Tensor, n_q: int | torch.Tensor | None = None) -> torch.Tensor:
        """Latents ``[B, dim, T]`` -> codes ``[B, max n_q, T]``; ``n_q`` is an int or per-stream ``[B]``."""
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"quantizer expects [batch, {self.dim}, frames], got {tuple(x.shape)}")
        n_q = self.default_n_q if n_q is None else n_q
        if not isinstance(n_q, torch.Tensor):
            n_q = torch.full((x.shape[0],), self.check_n_q(n_q), dtype=torch.long, device=x.device)
        count = int(n_q.max()) if len(n_q) else 0
        residual, codes = x, []
        for q in range(count):
            idx = self._nearest(q, residual)
            residual = residual - F.embedding(idx, self.embed[q]).transpose(1, 2)
            codes.append(idx)
        codes = torch.stack(codes, dim=1) if codes else x.new_zeros(x.shape[0], 0, x.shape[2], dtype=torch.long)
        unused = torch.arange(count, device=x.device)[None, :, None] >= n_q.to(x.device)[:, None, None]
        return codes.masked_fill(unused, UNUSED)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, k, T]`` (k <= n_q; UNUSED entries skipped) -> latents ``[B, dim, T]``."""
        if codes.dim() != 3 or codes.shape[1] > self.n_q:
            raise ValueError(f"codes must be [batch, <= {self.n_q}, frames], got {tuple(codes.shape)}")
        if codes.is_floating_point() or (codes >= self.codebook_size).any() or (codes < UNUSED).any():
            raise ValueError(f"codes must be integers in [0, {self.codebook_size}) or {UNUSED} (unused)")
        out = self.embed.new_zeros(codes.shape[0], self.dim, codes.shape[2])
        for q in range(codes.shape[1]):
            out = out + self._lookup(q, codes[:, q])
        return out

    # -- training ---------------------------------------------------------------------------------------
    def quantize(self, x: torch.Tensor, n_q: int | None = None) -> Quantized:
        """Quantize latents ``[B, dim, T]`` for training (or evaluation with a fixed ``n_q``).

        In training mode, each example draws its ``n_q`` from ``dropout_choices`` (quantizer dropout)
        unless ``n_q`` is given, and the codebooks take an EMA step toward the vectors assigned to them.
        """
        batch = x.shape[0]
        if n_q is not None:
            per_example = torch.full((batch,), self.check_n_q(n_q), dtype=torch.long, device=x.device)
        elif self.training and self.dropout:
            choices = torch.tensor(self.dropout_choices, device=x.device)
            per_example = choices[torch.randint(len(choices), (batch,), device=x.device)]
        else:
            per_example = torch.full((batch,), self.default_n_q, dtype=torch.long, device=x.device)
        if self.training and not bool(self.initialized):
            self._init_codebooks(x.detach())
        residual, quantized, codes = x.detach(), torch.zeros_like(x), []
        for q in range(int(per_example.max())):
            idx = self._nearest(q, residual, exact=not self.training)
            used = per_example > q
            idx = idx.masked_fill(~used[:, None], UNUSED)
            if self.training:
                self._ema_update(q, residual, idx)
            vectors = self._lookup(q, idx)
            residual = residual - vectors
            quantized = quantized + vectors
            codes.append(idx)
        commitment = F.mse_loss(x, quantized.detach())
        # straight-through: forward the quantized value, pass the gradient to the encoder unchanged
        return Quantized(x + (quantized - x).detach(), torch.stack(codes, dim=1), commitment, per_example)

    def _fresh_count(self, vectors_per_batch: float) -> float:
        """The EMA count a fresh code starts at: an average code's (see the module docstring)."""
        return max(self.dead_code_threshold, vectors_per_batch / self.codebook_size)

    @torch.no_grad()
    def _init_codebooks(self, x: torch.Tensor) -> None:
        """Every codebook starts as random vectors of the first batch (residuals of the earlier ones)."""
        residual = x
        fresh = self._fresh_count(x.shape[0] * x.shape[2])
        for q in range(self.n_q):
            self.embed[q] = self._sample(residual.transpose(1, 2).reshape(-1, self.dim), self.codebook_size)
            # a vector picked as a code leaves a residual of exactly zero, so later codebooks draw many equal
            # vectors; only the first of equal codes is ever chosen: the rest start dead, to be restarted
            # on the next batch
            self.cluster_size[q] = fresh
            self.cluster_size[q][_repeats(self.embed[q])] = self.dead_code_threshold
            self.embed_avg[q] = self.embed[q] * self.cluster_size[q][:, None]
            residual = residual - F.embedding(self._nearest(q, residual, exact=False), self.embed[q]).transpose(1, 2)
        self.initialized.fill_(True)

    @staticmethod
    def _sample(flat: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` random rows of ``flat [N, dim]`` (with repeats only when there are fewer)."""
        index = torch.randperm(len(flat), device=flat.device)[:count] if len(flat) >= count else \
            torch.randint(len(flat), (count,), device=flat.device)
        return flat[index]

    @torch.no_grad()
    def _ema_update(self, q: int, residual: torch.Tensor, idx: torch.Tensor) -> None:
        flat = residual.transpose(1, 2).reshape(-1, self.dim)
        codes = idx.reshape(-1)
        keep = codes >= 0
        flat, codes = flat[keep], codes[keep]
        if not len(codes):
            return
        counts = torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype)
        sums = torch.zeros_like(self.embed_avg[q]).index_add_(0, codes, flat)
        self.cluster_size[q].mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg[q].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size[q].sum()
        # Laplace smoothing keeps rarely used codes from dividing by ~0
        smoothed = (self.cluster_size[q] + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed[q] = self.embed_avg[q] / smoothed[:, None]
        dead = self.cluster_size[q] < self.dead_code_threshold
        if dead.any():  # restart dead codes on vectors this codebook is actually asked to quantize
            vectors = self._sample(flat, int(dead.sum()))
            count = self._fresh_count(float(total))
            self.embed[q][dead] = vectors
            self.embed_avg[q][dead] = vectors * count
            self.cluster_size[q][dead] = count


def _repeats(vectors: torch.Tensor) -> torch.Tensor:
    """Mask of the rows of ``vectors [K, dim]`` equal to an earlier row."""
    _, group = torch.unique(vectors, dim=0, return_inverse=True)
    index = torch.arange(len(vectors), device=vectors.device)
    first = torch.full_like(index, len(vectors)).scatter_reduce_(0, group, index, "amin")
    return first[group] != index


def inference_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without its quantizers' EMA statistics: what shipped weights need."""
    drop = {f"{name}.{b}" if name else b for name, m in model.named_modules()
            if isinstance(m, ResidualVectorQuantizer) for b in TRAINING_BUFFERS}
    return {k: v for k, v in model.state_dict().items() if k not in drop}
