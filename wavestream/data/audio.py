"""Audio file helpers for corpora: read any soundfile format as mono float32, resample, trim silence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".g722")


def read_audio(path: str | Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples of ``path`` (channels averaged), resampled to ``rate`` when given.

    Formats are whatever libsndfile reads (wav, flac, ogg/vorbis, opus, mp3 with libsndfile >= 1.1);
    PyAV is tried for anything else when it is installed.
    """
    try:
        audio, native = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        embedded = _embedded_ogg(path)
        if embedded is not None:
            audio, native = sf.read(embedded, dtype="float32", always_2d=True)
        else:
            audio, native = _read_with_av(path, exc)
    audio = audio.mean(axis=1).astype(np.float32)
    if rate is not None and rate != native:
        audio = resample(audio, native, rate)
    return audio, rate or native


def _embedded_ogg(path: str | Path) -> io.BytesIO | None:
    """The Ogg Vorbis stream inside a RIFF/WAVE file with format tag 0x674F ("Vorbis mode 1"), or None.

    Some sample packs (LMMS among them) ship such files: neither libsndfile nor FFmpeg decodes the
    wrapper, but the data chunk holds a complete Ogg stream that libsndfile reads.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        body = f.read()
    data = body.find(b"data")
    if data < 0:
        return None
    size = int.from_bytes(body[data + 4:data + 8], "little")
    chunk = body[data + 8:data + 8 + size]
    start = chunk.find(b"OggS")
    return io.BytesIO(chunk[start:]) if start >= 0 else None


def _read_with_av(path: str | Path, error: Exception) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:
        raise ValueError(f"cannot read {path}: {error} (install PyAV for more formats)") from error
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp")  # planar float: [channels, samples] per frame
            frames = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
            native = stream.rate
    except (av.FFmpegError, IndexError) as exc:
        raise ValueError(f"cannot read {path}: {error}; PyAV: {exc}") from exc
    if not frames:
        raise ValueError(f"cannot read {path}: no audio frames")
    return np.concatenate(frames, axis=-1).astype(np.float32).T, native


def read_segment(path: str | Path, start: int, frames: int) -> np.ndarray:
    """``frames`` mono samples from sample ``start`` of a prepared (mono, target-rate) file."""
    audio, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    return audio.mean(axis=1)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return audio.astype(np.float32)
    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """16-bit FLAC (or whatever the suffix says); peaks above full scale are scaled down, not clipped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0.999:
        audio = audio * (0.999 / peak)
    sf.write(str(path), audio, rate, subtype="PCM_16")


def _active_frames(audio: np.ndarray, rate: int, floor_db: float, frame_ms: float) -> tuple[int, np.ndarray | None]:
    """(frame length, indices of the frames within ``floor_db`` of the loudest one); None for no whole frame or
    digital silence (the loudest frame below -100 dBFS)."""
    frame = max(1, int(rate * frame_ms / 1000))
    n = len(audio) // frame
    if n == 0:
        return frame, None
    energy = (audio[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    if energy.max() <= 1e-10:
        return frame, None
    return frame, np.flatnonzero(10 * np.log10(energy / energy.max() + 1e-20) > floor_db)


def trim_silence(audio: np.ndarray, rate: int, floor_db: float = -40.0, frame_ms: float = 20.0,
                 margin_ms: float = 60.0) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``floor_db`` below the loudest frame (energy gate).

    A margin of ``margin_ms`` is kept around the voiced region so onsets and decays survive.
    Returns an empty array when nothing is above the gate (digital silence).
    """
    frame, active = _active_frames(audio, rate, floor_db, frame_ms)
    if active is None:
        return audio[:0]
    margin = int(rate * margin_ms / 1000)
    start = max(0, active[0] * frame - margin)
    stop = min(len(audio), (active[-1] + 1) * frame + margin)
    return audio[start:stop]


def speech_segments(audio: np.ndarray, rate: int, floor_db: float = -35.0, frame_ms: float = 10.0,
                    min_gap_ms: float = 150.0, margin_ms: float = 30.0) -> list[tuple[int, int]]:
    """(start, stop) samples of each stretch of sound in a recording of several words: frames within ``floor_db``
    of the loudest one, split where a pause lasts ``min_gap_ms`` or more, each kept with ``margin_ms`` around it
    (not past the middle of the pause). Empty for digital silence."""
    frame, active = _active_frames(audio, rate, floor_db, frame_ms)
    if active is None:
        return []
    gap = max(1, int(round(min_gap_ms / frame_ms)))
    breaks = np.flatnonzero(np.diff(active) > gap)
    spans = [(int(active[a]) * frame, (int(active[b]) + 1) * frame)
             for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks, len(active) - 1], strict=True)]
    margin = int(rate * margin_ms / 1000)
    out = []
    for k, (start, stop) in enumerate(spans):
        before = (spans[k - 1][1] + start) // 2 if k else 0
        after = (stop + spans[k + 1][0]) // 2 if k + 1 < len(spans) else len(audio)
        out.append((max(before, start - margin), min(after, stop + margin)))
    return out


def rms_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(audio, dtype=np.float64) ** 2) + 1e-12))
