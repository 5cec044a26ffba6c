"""Codec tokens on the wire (uint16 frames) and in .wsc files (header + bit-packed codes)."""

import io
import struct

import numpy as np
import pytest

from wavestream.streaming.tokens import (
    MAGIC,
    TokenFileHeader,
    decode_tokens,
    encode_tokens,
    pack_codes,
    read_token_file,
    read_token_header,
    unpack_codes,
    write_token_file,
)


def test_wire_layout_is_the_documented_example():
    """docs/protocol.md's worked example: 2 frames at n_q = 3."""
    codes = np.array([[1, 2, 3], [1023, 512, 0]])
    data = encode_tokens(codes)
    assert data.hex(" ") == "01 00 02 00 03 00 ff 03 00 02 00 00"
    assert np.array_equal(decode_tokens(data, 3), codes) and decode_tokens(data, 3).dtype == np.int64
    assert np.array_equal(decode_tokens(data, 6), codes.reshape(1, 6))  # width is the reader's to say


@pytest.mark.parametrize("bad, width, message", [(b"\x01\x00\x02", 1, "whole frames"), (b"", 3, "whole frames"),
                                                 (bytes(8), 3, "6 bytes each")])
def test_wire_refuses_partial_frames(bad, width, message):
    with pytest.raises(ValueError, match=message):
        decode_tokens(bad, width)


def test_wire_refuses_what_uint16_cannot_hold():
    for bad in (np.array([[-1]]), np.array([[65536]]), np.array([[0.5]])):
        with pytest.raises(ValueError):
            encode_tokens(bad)


@pytest.mark.parametrize("bits", [1, 7, 10, 16])
def test_packing_round_trips_at_any_width(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, 37)
    packed = pack_codes(codes, bits)
    assert len(packed) == -(-37 * bits // 8)
    assert np.array_equal(unpack_codes(packed, 37, bits), codes)
    assert pack_codes(np.array([0b1000000001, 1]), 10) == bytes([0b10000000, 0b01000000, 0b00010000])  # MSB first


def header(**changes) -> TokenFileHeader:
    fields = dict(model="codec", sample_rate=44100, frame_rate=50.0, n_q=6, codebook_size=1024, frames=51,
                  samples=44100, channels=2)
    return TokenFileHeader(**{**fields, **changes})


def test_file_round_trip_and_layout(tmp_path):
    h = header()
    codes = np.random.default_rng(0).integers(0, 1024, (51, 2, 6))
    path = tmp_path / "x.wsc"
    assert write_token_file(path, h, codes) == path.stat().st_size == h.file_bytes
    raw = path.read_bytes()
    # the documented fixed header: magic, version, header size, rate, channels, n_q, codebook size,
    # frame rate, frames, samples, name length, then the name and the packed codes
    assert struct.unpack_from("<4sHHIHHIdQQB", raw) == (MAGIC, 1, 50, 44100, 2, 6, 1024, 50.0, 51, 44100, 5)
    assert raw[45:50] == b"codec" and h.header_bytes == 50
    assert len(raw) - 50 == -(-51 * 2 * 6 * 10 // 8)  # 10 bits a code
    read_header, read_codes = read_token_file(path)
    assert read_header == h and np.array_equal(read_codes, codes)
    buffer = io.BytesIO()
    write_token_file(buffer, h, codes)
    assert buffer.getvalue() == raw


def test_bitrates_are_counted_from_the_bytes():
    h = header(channels=1, sample_rate=16000, samples=16000 * 10, frames=500)  # 10 s at 3 kbps
    rates = h.bitrates()
    assert rates["nominal"] == 3.0
    assert rates["payload"] == 8 * h.payload_bytes / 10 / 1000 == 3.0
    assert rates["file"] == pytest.approx(3.0 + 8 * 50 / 10 / 1000)


def test_damaged_or_foreign_files_are_refused_with_the_reason(tmp_path):
    h = header()
    good = tmp_path / "good.wsc"
    write_token_file(good, h, np.zeros((51, 2, 6), np.int64))
    raw = good.read_bytes()
    cases = {
        "short": (raw[:20], "shorter than"),
        "wav": (b"RIFF" + raw[4:], "not a wavestream token file"),
        "version": (raw[:4] + struct.pack("<H", 9) + raw[6:], "version 9 is not supported"),
        "truncated": (raw[:-1], "header promises"),
        "longer": (raw + b"\0", "header promises"),
        "rate": (raw[:8] + struct.pack("<I", 0) + raw[12:], "sample rate 0"),
        "size": (raw[:6] + struct.pack("<H", 49) + raw[8:], "header size"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.wsc"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_token_file(path)
    too_big = tmp_path / "too_big.wsc"
    write_token_file(too_big, header(codebook_size=1000), np.full((51, 2, 6), 999))
    too_big.write_bytes(too_big.read_bytes()[:-1] + b"\xff")  # the last code's bits: 1023 > 999
    with pytest.raises(ValueError, match="codebook size"):
        read_token_file(too_big)
    assert read_token_header(good) == h
    with pytest.raises(ValueError, match="header says"):
        write_token_file(tmp_path / "x.wsc", h, np.zeros((50, 2, 6), np.int64))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 1024\)"):
        write_token_file(tmp_path / "x.wsc", h, np.full((51, 2, 6), 1024))
    for bad in (dict(model=""), dict(n_q=0), dict(frame_rate=float("nan")), dict(codebook_size=70000)):
        with pytest.raises(ValueError, match="bad token file header"):
            header(**bad)
