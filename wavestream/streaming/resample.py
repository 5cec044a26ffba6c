"""Sample-rate conversion: a streaming resampler and a one-shot helper.

Two kinds of converter behind one interface, chosen by ``quality``:

- ``"LL"`` (low latency, the streaming default): a linear-phase windowed-sinc (Kaiser) polyphase
  filter of our own. Its passband reaches ``PASSBAND`` of the lower rate's Nyquist frequency
  (7 kHz between 16 kHz and any higher rate, 3.5 kHz at 8 kHz) within 0.001 dB, and it rejects
  everything from that Nyquist frequency on by ``STOPBAND_DB`` (no aliasing or imaging above
  -80 dB). Output sample k is computed as soon as the input reaches ``half_width`` seconds past
  its time, and not later: no blocks, so the longest wait is the filter's half-length (about
  2.5 ms per resampler next to 16 kHz, 5 ms next to 8 kHz). It is computed in blocks of about
  24 consecutive outputs, each one BLAS matrix-vector product of the same shape whatever the
  message (a block whose input is not all in yet is computed again with the next message, and only
  its ready outputs leave): 6-13 us of CPU per 16 ms message and direction, one channel (soxr HQ:
  2-3.5 us), where a gather and sum per output took 30-65 us.
- ``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"``, ``"VHQ"``: ``soxr.ResampleStream``. soxr filters in
  blocks, so a stream fed in small pieces waits for whole blocks (a saw-tooth of about 6 to 37 ms
  for HQ between 48 and 16 kHz, 12 to 116 ms between 8 and 16 kHz); fine for files.

Both are deterministic in the stream: the concatenation of ``process`` outputs over any partition
of the input, followed by ``flush()``, is bit-identical to one-shot ``resample`` of the whole
signal (both compensate their filter delay, so output sample k belongs to time k / out_rate).
Equal rates pass samples through.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import soxr

from .framing import check_samples

QUALITIES = ("LL", "QQ", "LQ", "MQ", "HQ", "VHQ")
SOXR_QUALITIES = QUALITIES[1:]

#: "LL": passband edge as a fraction of the lower rate's Nyquist frequency; the stopband starts at
#: that Nyquist frequency, attenuated by STOPBAND_DB (Kaiser window)
PASSBAND, STOPBAND_DB = 0.875, 80.0
#: output samples computed per block (bounds the temporary [block, channels, taps] array)
_BLOCK = 4096


def _check_rate(rate: int, name: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate < 1:
        raise ValueError(f"{name} must be a positive integer in Hz, got {rate!r}")


def check_quality(quality: str) -> None:
    if quality not in QUALITIES:
        raise ValueError(f"unknown resampling quality {quality!r}; choose one of {', '.join(QUALITIES)}")


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: str = "HQ") -> np.ndarray:
    """One-shot resampling of ``float32 [n, channels]``."""
    _check_rate(in_rate, "in_rate")
    _check_rate(out_rate, "out_rate")
    check_quality(quality)
    if not isinstance(samples, np.ndarray) or samples.ndim != 2:
        raise ValueError("samples must be a 2-D numpy array [frames, channels]")
    check_samples(samples, samples.shape[1])
    if in_rate == out_rate:
        return samples.copy()
    if quality == "LL":
        stream = StreamResampler(in_rate, out_rate, samples.shape[1], quality)
        return np.concatenate([stream.process(samples), stream.flush()])
    return soxr.resample(np.ascontiguousarray(samples), in_rate, out_rate, quality=quality)


def half_width(in_rate: int, out_rate: int) -> float:
    """Seconds of input the "LL" filter needs past an output sample's time (its half-length)."""
    transition = (1 - PASSBAND) * min(in_rate, out_rate) / 2  # Hz
    # Kaiser's estimate of the length for STOPBAND_DB over this transition, halved
    return (STOPBAND_DB - 7.95) / (2.285 * 2 * math.pi * transition) / 2


@functools.lru_cache(maxsize=8)
def _sinc_table(in_rate: int, out_rate: int) -> tuple[int, int, int, np.ndarray]:
    """(up, down, K, coefficients float32 [up, 2K]) of the "LL" filter: output k sits at input
    position k * down / up; with i, p = divmod(k * down, up) it is the dot product of inputs
    i - K + 1 .. i + K with row p."""
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    taps = math.ceil(half_width(in_rate, out_rate) * in_rate)  # K
    cutoff = (1 + PASSBAND) / 4 * min(in_rate, out_rate) / in_rate  # cycles per input sample
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    # offsets of the taps from the output's position, in input samples: j - K + 1 - p / up
    offsets = (np.arange(2 * taps)[None, :] - taps + 1) - np.arange(up)[:, None] / up
    grid = np.linspace(-1.0, 1.0, 8193)  # the window, interpolated (within 1e-6 of the exact)
    window = np.interp(offsets / taps, grid, np.i0(beta * np.sqrt(1 - grid ** 2)) / np.i0(beta))
    table = (2 * cutoff * np.sinc(2 * cutoff * offsets) * window).astype(np.float32)
    table.setflags(write=False)  # cached and shared by every stream of this pair: read-only
    return up, down, taps, table


#: "LL" block plans: outputs are computed in blocks of R consecutive samples, each block one BLAS
#: matrix-vector product of the same shape ([1, L] @ [L, R]) whatever the message, so its bits do
#: not depend on how the stream was cut; a plan needing more than this many coefficients (rates
#: with a long phase cycle, e.g. 44101 Hz) computes output by output instead (slower, also exact)
_PLAN_LIMIT = 1 << 20
#: blocks per matrix product call (bounds the tiled coefficients and the scratch buffers)
_MAX_BLOCKS = 64
#: outputs per block, about (fewer: less work on taps that are zero, as a block reads
#: (R - 1) down / up inputs more than one output's 2K; more: fewer BLAS calls; 16-48 measured alike)
_BLOCK_OUTPUTS = 24
#: what blocks are computed in (float64 sums were 20-40 % slower, and no closer to _process_each's)
_DTYPE = np.float32
_ITEM = np.dtype(_DTYPE).itemsize
_ALIGN = 64 // _ITEM  # elements per 64 bytes


def _aligned(shape: tuple[int, ...]) -> np.ndarray:
    """Zeroed C-contiguous _DTYPE array starting on a 64-byte boundary."""
    n = math.prod(shape)
    raw = np.zeros(n + _ALIGN, _DTYPE)
    skip = (-raw.ctypes.data // _ITEM) % _ALIGN
    return raw[skip:skip + n].reshape(shape)


@functools.lru_cache(maxsize=8)
def _block_plan(in_rate: int, out_rate: int) -> tuple[int, int, int, np.ndarray] | None:
    """(R, step, L, G) of the "LL" filter computed in blocks of R outputs, or None (see _PLAN_LIMIT).

    Block b holds outputs bR .. bR + R - 1 and reads L inputs from floor(bR * down / up) - K + 1 on;
    its coefficients G[b % P] (float32 [P, 1, L, R], zero outside each output's 2K taps, P = up /
    gcd(up, R)) hold the rows of the table in place, so output bR + j = inputs @ G[b % P][0, :, j].
    With P == 1 the blocks start every ``step`` inputs (else step is 0); with P > 1 G is tiled
    (G[t] = G[t % P], P + _MAX_BLOCKS of them) so that any run of blocks reads a slice of it."""
    up, down, taps, table = _sinc_table(in_rate, out_rate)
    if up <= 64:  # a whole number of phase cycles per block: one coefficient matrix
        size = up * max(1, round(_BLOCK_OUTPUTS / up))
    else:  # a divisor of the cycle near _BLOCK_OUTPUTS
        divisors = [r for r in range(_BLOCK_OUTPUTS // 2, 2 * _BLOCK_OUTPUTS + 1) if up % r == 0]
        if not divisors:
            return None
        size = min(divisors, key=lambda r: abs(r - _BLOCK_OUTPUTS))
    cycle = up // math.gcd(up, size)
    k = np.arange(cycle * size, dtype=np.int64).reshape(cycle, size)  # the outputs of blocks 0 .. P-1
    i, p = np.divmod(k * down, up)
    offsets = i - i[:, :1]  # each output's first tap, from its block's first input
    length = -(-(int(offsets.max()) + 2 * taps) // _ALIGN) * _ALIGN
    tiles = cycle + _MAX_BLOCKS if cycle > 1 else 1
    if tiles * length * size > _PLAN_LIMIT:
        return None
    coefficients = _aligned((tiles, 1, length, size))
    for s in range(cycle):
        for j in range(size):
            coefficients[s, 0, offsets[s, j]:offsets[s, j] + 2 * taps, j] = table[p[s, j]]
    for t in range(cycle, tiles):
        coefficients[t] = coefficients[t % cycle]
    coefficients.setflags(write=False)
    step = size * down // up if cycle == 1 else 0
    return size, step, length, coefficients


class _SincStream:
    """The "LL" converter's state: the input still needed, the next output index, inputs seen."""

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self.up, self.down, self.taps, self.table = _sinc_table(in_rate, out_rate)
        self.plan = _block_plan(in_rate, out_rate)
        self.channels = channels
        if self.plan is not None:
            size, _, length, coefficients = self.plan
            self.cycle = 1 if len(coefficients) == 1 else len(coefficients) - _MAX_BLOCKS
            # block inputs, copied (cycle > 1; with one cycle they are a view of the store)
            self.gathered = _aligned((_MAX_BLOCKS, channels, 1, length)) if self.cycle > 1 else None
            # rows of whole 64-byte lines: where BLAS reads and writes a block, whatever the cut
            self.products = _aligned((_MAX_BLOCKS, channels, 1, -(-size // _ALIGN) * _ALIGN))[..., :size]
            # floor(t R down / up) for the blocks t of a cycle and the next _MAX_BLOCKS
            self.offsets = np.arange(self.cycle + _MAX_BLOCKS, dtype=np.int64) * size * self.down // self.up
        self.clear()

    def clear(self) -> None:
        self.next_out = 0
        self.n_in = 0
        if self.plan is None:
            # buffer[0] is input sample ``base``; the stream starts with K - 1 zeros before sample 0
            self.base = 1 - self.taps
            self.buffer = np.zeros((self.taps - 1, self.channels), np.float32)
            return
        # channel-major, zero from ``fill`` on; ``base`` stays a multiple of _ALIGN so that a block's
        # inputs always sit at the same alignment
        self.base = (1 - self.taps) // _ALIGN * _ALIGN  # 1 - K, rounded down
        self.fill = -self.base
        self.store = _aligned((self.channels, 4 * self.plan[2] + 4096))  # L is a multiple of _ALIGN

    def ready(self, n_in: np.ndarray | int) -> np.ndarray | int:
        """Output samples out after ``n_in`` input samples (before a flush); an int (in ints: per message,
        with no numpy call) or an array of counts."""
        # output k needs input floor(k * down / up) + K
        if not isinstance(n_in, np.ndarray):
            n = int(n_in) - self.taps
            return -(-n * self.up // self.down) if n > 0 else 0
        n = n_in.astype(np.int64) - self.taps
        return np.where(n > 0, -(-n * self.up // self.down), 0)

    def total(self) -> int:
        """Output samples of the whole stream: every k with k / out_rate < n_in / in_rate."""
        return -(-self.n_in * self.up // self.down)

    def _block_start(self, block: int) -> int:
        """Index in ``store`` of block ``block``'s first input."""
        return block * self.plan[0] * self.down // self.up - self.taps + 1 - self.base

    def _reserve(self, end: int) -> None:
        """Room in ``store`` up to index ``end`` (zeros past ``fill``)."""
        if end > self.store.shape[1]:
            store = _aligned((self.channels, -(-2 * end // _ALIGN) * _ALIGN))
            store[:, :self.fill] = self.store[:, :self.fill]
            self.store = store

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self.plan is None:
            return self._process_each(samples, last)
        size, step, length, coefficients = self.plan
        n = len(samples)
        self.n_in += n
        stop = self.total() if last else self.ready(self.n_in)
        first = self.next_out // size
        blocks = max(-(-stop // size) - first, 0)
        self._reserve(max(self.fill + n, self._block_start(first + blocks) + length))
        self.store[:, self.fill:self.fill + n] = samples.T
        self.fill += n
        if stop <= self.next_out:
            return np.zeros((0, self.channels), np.float32)
        store, channels = self.store, self.channels
        parts = []
        for b0 in range(first, first + blocks, _MAX_BLOCKS):
            nb = min(_MAX_BLOCKS, first + blocks - b0)
            products = self.products[:nb]
            if self.cycle == 1:
                start = self._block_start(b0)
                # block b's inputs, [nb, channels, 1, L]: a view (the unit axis's stride only makes
                # it a matrix BLAS takes); the same coefficients for every block
                inputs = np.ndarray((nb, channels, 1, length), _DTYPE, store, start * _ITEM,
                                    (step * _ITEM, store.strides[0], length * _ITEM, _ITEM))
                np.matmul(inputs, coefficients[0, 0], out=products)
            else:
                windows = np.ndarray((store.shape[1] - length + 1, channels, length), _DTYPE, store, 0,
                                     (_ITEM, store.strides[0], _ITEM))
                s = b0 % self.cycle  # block b starts at input floor(b R down / up) - K + 1
                starts = self.offsets[s:s + nb] + (b0 // self.cycle * self.down - self.taps + 1 - self.base)
                inputs = self.gathered[:nb]
                inputs.reshape(nb, channels, length)[...] = windows[starts]  # into aligned rows
                np.matmul(inputs, coefficients[s:s + nb], out=products)
            part = products.reshape(nb, channels, size).transpose(0, 2, 1).reshape(nb * size, channels)
            parts.append(part if blocks <= _MAX_BLOCKS else part.copy())  # the scratch is reused
        block_out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        lo = self.next_out - first * size
        # a copy; + 0 turns a -0.0 (a zero tap times a negative input) into 0.0, whatever the cut
        out = np.empty((stop - self.next_out, channels), np.float32)
        np.add(block_out[lo:lo + len(out)], 0.0, out=out)
        self.next_out = stop
        # drop what is before the (partial) block that holds the next output, at a multiple of
        # _ALIGN, once that is half the store (a shift per message would cost a copy each)
        keep = self.fill if last else min(self._block_start(self.next_out // size), self.fill) // _ALIGN * _ALIGN
        if keep > 0 and (last or 2 * keep >= store.shape[1]):
            rest = self.fill - keep
            store[:, :rest] = store[:, keep:self.fill]
            store[:, rest:self.fill] = 0
            self.fill, self.base = rest, self.base + keep
        return out

    def _process_each(self, samples: np.ndarray, last: bool) -> np.ndarray:
        """Output by output (plans too large to keep): gathered windows times table rows, summed."""
        self.n_in += len(samples)
        parts = [self.buffer, samples]
        stop = self.total() if last else self.ready(self.n_in)
        if last:
            parts.append(np.zeros((2 * self.taps, self.channels), np.float32))  # silence after the end
        buffer = np.concatenate(parts)
        out = np.empty((max(stop - self.next_out, 0), self.channels), np.float32)
        # windows[s] = inputs base + s .. base + s + 2K - 1, [channels, 2K]: a view
        windows = np.lib.stride_tricks.sliding_window_view(buffer, 2 * self.taps, axis=0) if len(out) else None
        for pos in range(0, len(out), _BLOCK):
            k = np.arange(self.next_out + pos, min(self.next_out + pos + _BLOCK, stop), dtype=np.int64)
            i, p = np.divmod(k * self.down, self.up)
            # one contiguous row of 2K taps per output and channel, summed the same way whatever
            # the block: the result does not depend on how the stream was cut
            products = windows[i - self.taps + 1 - self.base] * self.table[p][:, None, :]
            out[pos:pos + len(k)] = products.sum(axis=-1)
        self.next_out = max(stop, self.next_out)
        first = (self.next_out * self.down) // self.up - self.taps + 1  # oldest input still needed
        self.buffer = buffer[max(first - self.base, 0):len(buffer) - (2 * self.taps if last else 0)]
        self.base = max(first, self.base)
        return out

    def delay(self) -> float:
        return float(self.total() - self.next_out)


class StreamResampler:
    """Streaming ``in_rate -> out_rate`` conversion of ``float32 [n, channels]`` pieces.

    ``process`` returns what is ready (the filter holds back what still needs later input);
    ``flush`` returns the rest and ends the stream; ``reset`` starts a new one.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int, quality: str = "LL"):
        _check_rate(in_rate, "in_rate")
        _check_rate(out_rate, "out_rate")
        check_quality(quality)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.in_rate, self.out_rate, self.channels, self.quality = int(in_rate), int(out_rate), channels, quality
        self.identity = self.in_rate == self.out_rate
        if self.identity:
            self._stream = None
        elif quality == "LL":
            self._stream = _SincStream(self.in_rate, self.out_rate, channels)
        else:
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, channels, dtype="float32",
                                               quality=quality)
        self._flushed = False

    @property
    def delay(self) -> float:
        """Output samples currently held back by the filter (0 for a passthrough)."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    def ready(self, n_in: np.ndarray) -> np.ndarray | None:
        """Output samples ``process`` has returned after ``n_in`` input samples (an array of counts),
        whatever the pieces: known for a passthrough and for "LL"; None for soxr (feed it to know)."""
        if self._stream is None:
            return np.asarray(n_in, np.int64)
        if isinstance(self._stream, _SincStream):
            return self._stream.ready(np.asarray(n_in, np.int64))
        return None

    def process(self, samples: np.ndarray) -> np.ndarray:
        check_samples(samples, self.channels)
        if self._flushed:
            raise ValueError("resampler was flushed; call reset() before feeding a new stream")
        if self._stream is None:
            return samples.copy()
        if isinstance(self._stream, _SincStream):
            return self._stream.process(samples)
        return self._stream.resample_chunk(np.ascontiguousarray(samples))

    def flush(self) -> np.ndarray:
        if self._flushed:
            raise ValueError("resampler was already flushed; call reset() before feeding a new stream")
        self._flushed = True
        empty = np.zeros((0, self.channels), np.float32)
        if self._stream is None:
            return empty
        if isinstance(self._stream, _SincStream):
            return self._stream.process(empty, last=True)
        return self._stream.resample_chunk(empty, last=True)

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()
        self._flushed = False
