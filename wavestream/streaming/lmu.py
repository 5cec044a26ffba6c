"""Legendre Memory Unit memory (Voelker et al. 2019) with explicit state ``m``.

The memory of order ``d`` holds the Legendre coefficients of a sliding window of ``theta`` steps
of its input. With the zero-order-hold discretisation (dt = 1) of ``theta m' = A m + B u``:

    m[t] = Ad m[t-1] + Bd u[t]

Unrolled over a chunk starting at t0 (``k = 0 .. n-1``), this is the closed form used by ``step``:

    m[t0+k] = Ad^(k+1) m[t0-1] + sum_{j<=k} Ad^(k-j) Bd u[t0+j]

The sum is a causal convolution of ``u`` with the impulse response ``H[k] = Ad^k Bd``, done with
FFTs so any length costs O(n log n): ``parallel(u)`` is exactly that term alone (the training
form, from a zero memory), and ``step`` adds the free response ``Ad^(k+1) m[t0-1]`` of the
carried memory. Short chunks (inference, up to ``DIRECT_MAX`` steps) skip the FFTs: the whole
closed form is one small matmul, ``[u, m[t0-1]]`` times a cached table (the Toeplitz of ``H`` over
the powers of ``Ad``), 2-3x faster there. Each of the ``C`` input channels has its own memory (no
learned projection; put a 1x1 conv in front to mix channels): ``u [B, C, T] -> m [B, C*d, T]``, channel-major
(``m[:, c*d + i]`` is coefficient i of channel c).

Matrix powers are computed in float64 by repeated squaring and cast to the input dtype; the FFTs
run in the input dtype (float32 round-off measured ~1e-6 for 4000 steps, order 256).
"""

from __future__ import annotations

import torch

from .module import StreamingModule
from .state import State


def lmu_matrices(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous-time ``A / theta`` and ``B / theta`` of Voelker 2019, eq. 2 (float64)."""
    i = torch.arange(order, dtype=torch.float64)[:, None]
    j = torch.arange(order, dtype=torch.float64)[None, :]
    sign = torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    a = (2 * i + 1) * sign
    b = (2 * i[:, 0] + 1) * (-1.0) ** i[:, 0]
    return a / theta, b / theta


def zoh_discretise(a: torch.Tensor, b: torch.Tensor, dt: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact zero-order hold: ``expm([[A, B], [0, 0]] dt) = [[Ad, Bd], [0, 1]]``."""
    d = a.shape[0]
    block = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    block[:d, :d], block[:d, d] = a, b
    e = torch.linalg.matrix_exp(block * dt)
    return e[:d, :d], e[:d, d]


DIRECT_MAX = 16  # chunks up to this many steps use the direct closed form (no FFT)


class LMUMemory(StreamingModule):
    """``u [B, C, T] -> m [B, C * order, T]``; state ``m`` of shape ``[B, C, order]``."""

    def __init__(self, channels: int, order: int, theta: float):
        super().__init__()
        if channels < 1 or order < 1 or theta <= 0:
            raise ValueError(f"need channels >= 1, order >= 1, theta > 0; got {channels}, {order}, {theta}")
        self.channels, self.order, self.theta = channels, order, theta
        a, b = zoh_discretise(*lmu_matrices(order, theta))
        # float64 CPU tables (not buffers: .float() must not round them), grown on demand; a table is
        # replaced, never changed in place, so threads stepping the same module cannot corrupt it
        self._squares = [a]  # A^(2^i)
        self._impulse = b[:, None]  # H[k] = A^k B for k < its length, [order, K]
        self._direct: dict[tuple, torch.Tensor] = {}  # (length, device, dtype) -> direct_table

    # -- float64 tables, grown on demand by doubling --------------------------------------------
    def _power_of_two(self, i: int) -> torch.Tensor:
        """A^(2^i) in float64."""
        squares = self._squares
        if len(squares) <= i:
            squares = list(squares)
            while len(squares) <= i:
                squares.append(squares[-1] @ squares[-1])
            self._squares = squares
        return squares[i]

    def impulse_response(self, n: int) -> torch.Tensor:
        """``H[:, k] = A^k B`` for ``k < n`` (float64, ``[order, n]``)."""
        h = self._impulse
        while h.shape[1] < n:  # H[L:2L] = A^L H[0:L]
            h = torch.cat([h, self._power_of_two(h.shape[1].bit_length() - 1) @ h], dim=1)
        self._impulse = h
        return h[:, :n]

    def free_response(self, m: torch.Tensor, n: int) -> torch.Tensor:
        """``A^(k+1) m`` for ``k < n``: ``[B, C, order] -> [B, C, order, n]`` in m's dtype."""
        out = (m @ self._power_of_two(0).to(m.device, m.dtype).T)[..., None]
        while out.shape[-1] < n:  # columns L..2L-1 are A^L times columns 0..L-1
            power = self._power_of_two(out.shape[-1].bit_length() - 1).to(m.device, m.dtype)
            out = torch.cat([out, torch.einsum("ij,bcjk->bcik", power, out)], dim=-1)
        return out[..., :n]

    def direct_table(self, n: int, device, dtype) -> torch.Tensor:
        """The closed form for ``n <= DIRECT_MAX`` steps as one matrix ``[n + order, order * n]``: row
        ``j < n`` holds ``H[i, k - j]`` (0 for j > k), row ``n + j`` holds ``A^(k+1)[i, j]``, column
        ``i * n + k`` (coefficient i at step k), so ``[u[t0:t0+n], m[t0-1]] @ table`` is the memory.

        Built once per length, device and dtype (a model steps with one or two lengths)."""
        key = (n, device, dtype)
        table = self._direct.get(key)
        if table is None:
            lag = torch.arange(n)[:, None] - torch.arange(n)[None, :]  # k - j
            toeplitz = self.impulse_response(n)[:, lag.clamp_min(0)] * (lag >= 0)  # [i, k, j]
            powers = [self._power_of_two(0)]
            while len(powers) < n:
                powers.append(powers[0] @ powers[-1])
            powers = torch.stack(powers)  # [k, i, j]
            table = torch.cat(
                [toeplitz.permute(2, 0, 1).reshape(n, -1), powers.permute(2, 1, 0).reshape(self.order, -1)]
            )
            table = table.to(device, dtype)
            self._direct[key] = table
        return table

    # -- the two forms --------------------------------------------------------------------------
    def parallel(self, u: torch.Tensor) -> torch.Tensor:
        """Memory from a zero start, by FFT convolution with the impulse response: ``[B, C*d, T]``."""
        self._check_input(u)
        b, c, n = u.shape
        if not n:
            return u.new_zeros(b, c * self.order, 0)
        size = 1 << (2 * n - 1).bit_length()  # linear (not circular) convolution
        h = self.impulse_response(n).to(u.device, u.dtype)
        spec = torch.fft.rfft(u, size)[:, :, None, :] * torch.fft.rfft(h, size)
        return torch.fft.irfft(spec, size)[..., :n].reshape(b, c * self.order, n)

    def own_state(self, batch, device, dtype) -> State:
        return {"m": torch.zeros(batch, self.channels, self.order, device=device, dtype=dtype)}

    def step(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self._check_input(u)
        b, c, n = u.shape
        if not n:
            return u.new_zeros(b, c * self.order, 0), {"m": state["m"]}
        if n <= DIRECT_MAX:
            rows = torch.cat([u.reshape(b * c, n), state["m"].reshape(b * c, self.order)], dim=1)
            m = (rows @ self.direct_table(n, u.device, u.dtype)).reshape(b, c * self.order, n)
        else:
            m = self.parallel(u) + self.free_response(state["m"], n).reshape(b, c * self.order, n)
        return m, {"m": m[..., -1].reshape(state["m"].shape)}

    def frame(self, u: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``step`` on one time step without the checks: ``u [B, C]`` and the state ``m [B, C, order]`` -> the
        new memory ``[B, C, order]`` (both the output, flattened, and the next state): the direct closed
        form's matmul of ``step`` for one step, the same values."""
        b, c = u.shape
        rows = torch.cat([u.reshape(b * c, 1), m.reshape(b * c, self.order)], dim=1)
        return torch.mm(rows, self.direct_table(1, u.device, u.dtype)).view(b, c, self.order)

    def _check_input(self, u: torch.Tensor) -> None:
        if u.dim() != 3 or u.shape[1] != self.channels:
            raise ValueError(f"LMUMemory expects [batch, {self.channels}, time], got {tuple(u.shape)}")
