"""Codec tokens on the wire and in files (docs/protocol.md, "Codec tokens").

Wire: a binary message of tokens is little-endian ``uint16``, row-major ``[frames, width]`` (width =
rows x codebooks for a server's token output, codebooks for a decode stream's input). uint16 holds
any codebook of up to 65536 codes and is read with one ``np.frombuffer`` on any platform.

File (``.wsc``, version 1): a small header, then the codes bit-packed at ``ceil(log2(codebook_size))``
bits each (10 for 1024 codes), most significant bit first, in frame-major order (frame, channel,
codebook), the last byte padded with zero bits. All header integers are little-endian:

    offset size type     field
     0      4   bytes    magic b"WSCF"
     4      2   uint16   format version (1)
     6      2   uint16   header size in bytes (45 + name length: the codes start here)
     8      4   uint32   sample rate of the encoded audio in Hz (a decoder writes this rate)
    12      2   uint16   channels (each channel is its own token stream)
    14      2   uint16   n_q: codebooks per frame and channel
    16      4   uint32   codebook size
    20      8   float64  frame rate in frames per second (at the model's rate)
    28      8   uint64   frames
    36      8   uint64   samples of the encoded audio at the sample rate (a decoder cuts to this length)
    44      1   uint8    length of the model name in bytes
    45      n   utf-8    model name (e.g. "codec"): the model that decodes the codes

Everything here is numpy only, so a thin client can read and write tokens without torch.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

TOKEN_DTYPE = np.dtype("<u2")
MAGIC = b"WSCF"
VERSION = 1
SUFFIX = ".wsc"
_FIXED = struct.Struct("<4sHHIHHIdQQB")  # everything up to and including the name length
MAX_CODEBOOK_SIZE = 1 << 16  # what uint16 holds


def encode_tokens(frames: np.ndarray) -> bytes:
    """Integer codes ``[frames, ...]`` -> the wire's little-endian uint16 bytes (row-major)."""
    frames = np.asarray(frames)
    if not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got {frames.dtype}")
    if frames.size and (frames.min() < 0 or frames.max() >= MAX_CODEBOOK_SIZE):
        raise ValueError(f"token codes must be in [0, {MAX_CODEBOOK_SIZE}) to go over the wire as uint16")
    return np.ascontiguousarray(frames, TOKEN_DTYPE).tobytes()


def decode_tokens(data: bytes | bytearray | memoryview, width: int) -> np.ndarray:
    """The wire's uint16 bytes -> int64 ``[frames, width]``; ValueError unless it is whole frames (and not empty)."""
    n = memoryview(data).nbytes
    frame_bytes = TOKEN_DTYPE.itemsize * width
    if n == 0 or n % frame_bytes:
        raise ValueError(f"a token message must be whole frames of {width} little-endian uint16 codes "
                         f"({frame_bytes} bytes each), got {n} bytes")
    return np.frombuffer(data, TOKEN_DTYPE).reshape(-1, width).astype(np.int64)


def bits_per_code(codebook_size: int) -> int:
    return max(1, math.ceil(math.log2(codebook_size)))


@dataclass(frozen=True)
class TokenFileHeader:
    model: str
    sample_rate: int
    frame_rate: float
    n_q: int
    codebook_size: int
    frames: int
    samples: int
    channels: int = 1
    version: int = VERSION

    def __post_init__(self):
        problems = []
        if self.version != VERSION:
            problems.append(f"format version {self.version} (this reader knows {VERSION})")
        if not self.model or len(self.model.encode()) > 255:
            problems.append(f"model name {self.model!r} (1-255 bytes of UTF-8)")
        for name, value, low, high in (("sample rate", self.sample_rate, 1, 384_000),
                                       ("channels", self.channels, 1, 64), ("n_q", self.n_q, 1, 1024),
                                       ("codebook size", self.codebook_size, 2, MAX_CODEBOOK_SIZE),
                                       ("frames", self.frames, 0, 2**40), ("samples", self.samples, 0, 2**48)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems.append(f"{name} {value!r} (must be an integer in {low}..{high})")
        if not (math.isfinite(self.frame_rate) and 0 < self.frame_rate <= self.sample_rate):
            problems.append(f"frame rate {self.frame_rate!r}")
        if problems:
            raise ValueError("bad token file header: " + "; ".join(problems))

    @property
    def header_bytes(self) -> int:
        return _FIXED.size + len(self.model.encode())

    @property
    def bits(self) -> int:
        """Bits per code in the file."""
        return bits_per_code(self.codebook_size)

    @property
    def payload_bytes(self) -> int:
        return -(-self.frames * self.channels * self.n_q * self.bits // 8)

    @property
    def file_bytes(self) -> int:
        return self.header_bytes + self.payload_bytes

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def bitrates(self) -> dict[str, float]:
        """kbit/s per second of audio: ``nominal`` (log2 of the codebook size per code, as a bitrate is
        quoted), and counted from this file's bytes: ``payload`` (codes only) and ``file`` (with header)."""
        seconds = self.seconds or math.nan
        return {"nominal": self.channels * self.n_q * math.log2(self.codebook_size) * self.frame_rate / 1000,
                "payload": 8 * self.payload_bytes / seconds / 1000, "file": 8 * self.file_bytes / seconds / 1000}

    def pack(self) -> bytes:
        name = self.model.encode()
        return _FIXED.pack(MAGIC, self.version, self.header_bytes, self.sample_rate, self.channels, self.n_q,
                           self.codebook_size, self.frame_rate, self.frames, self.samples, len(name)) + name

    @classmethod
    def unpack(cls, head: bytes) -> TokenFileHeader:
        """Parse a header from the first bytes of a file (at least ``_FIXED.size + 255`` or the whole file)."""
        if len(head) < _FIXED.size:
            raise ValueError(f"not a token file: {len(head)} bytes is shorter than the {_FIXED.size}-byte header")
        magic, version, size, rate, channels, n_q, codebook_size, frame_rate, frames, samples, name_len = \
            _FIXED.unpack_from(head)
        if magic != MAGIC:
            raise ValueError(f"not a wavestream token file ({SUFFIX}): it starts with {magic!r}, not {MAGIC!r}")
        if version != VERSION:
            raise ValueError(f"token file format version {version} is not supported (this reader knows {VERSION})")
        if size != _FIXED.size + name_len or len(head) < size:
            raise ValueError(f"bad token file header: header size {size} does not fit its model name "
                             f"({name_len} bytes) or the file")
        try:
            model = head[_FIXED.size:size].decode()
        except UnicodeDecodeError:
            raise ValueError("bad token file header: the model name is not UTF-8") from None
        return cls(model, rate, frame_rate, n_q, codebook_size, frames, samples, channels, version)


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Codes (any shape, flattened in C order) -> ``bits`` bits each, MSB first, zero-padded to a byte."""
    flat = np.asarray(codes, np.int64).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1)
    return np.packbits(((flat[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """``count`` codes of ``bits`` bits from ``pack_codes`` output -> int64 ``[count]``."""
    unpacked = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits).reshape(count, bits)
    return unpacked.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1))


def write_token_file(path: str | Path | BinaryIO, header: TokenFileHeader, codes: np.ndarray) -> int:
    """Write ``codes [frames, channels, n_q]`` under ``header``; returns the bytes written."""
    codes = np.asarray(codes)
    expected = (header.frames, header.channels, header.n_q)
    if codes.shape != expected:
        raise ValueError(f"codes have shape {codes.shape}, the header says {expected}")
    if codes.size and (codes.min() < 0 or codes.max() >= header.codebook_size):
        raise ValueError(f"codes must be in [0, {header.codebook_size})")
    data = header.pack() + pack_codes(codes, header.bits)
    if isinstance(path, str | Path):
        Path(path).write_bytes(data)
    else:
        path.write(data)
    return len(data)


def read_token_header(path: str | Path) -> TokenFileHeader:
    """The header of a token file, checked against the file's size (ValueError with the reason)."""
    path = Path(path)
    with path.open("rb") as f:
        header = TokenFileHeader.unpack(f.read(_FIXED.size + 255))
    size = path.stat().st_size
    if size != header.file_bytes:
        raise ValueError(f"token file is {size} bytes; its header promises {header.file_bytes} "
                         f"({header.header_bytes} header + {header.payload_bytes} for {header.frames} frames x "
                         f"{header.channels} channel(s) x {header.n_q} codebooks at {header.bits} bits)")
    return header


def read_token_file(path: str | Path) -> tuple[TokenFileHeader, np.ndarray]:
    """(header, codes int64 ``[frames, channels, n_q]``); ValueError for a damaged or foreign file."""
    header = read_token_header(path)
    with Path(path).open("rb") as f:
        f.seek(header.header_bytes)
        payload = f.read(header.payload_bytes)
    count = header.frames * header.channels * header.n_q
    codes = unpack_codes(payload, count, header.bits)
    if count and codes.max() >= header.codebook_size:
        raise ValueError(f"token file holds codes >= its codebook size {header.codebook_size}")
    return header, codes.reshape(header.frames, header.channels, header.n_q)
