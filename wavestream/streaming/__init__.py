"""wavestream.streaming: model-agnostic streaming machinery (state, causal layers, framing, resampling, PCM)."""

import importlib

# Names resolve on first use (PEP 562): the numpy-only wire pieces (pcm, framing, resample) import
# without torch, so a thin client does not pay for it.
_HOME = {
    "CausalAttention": "attention", "FSMN": "conv", "CausalConv1d": "conv", "CausalConvTranspose1d": "conv",
    "Framer": "framing", "LMUMemory": "lmu", "ChannelLayerNorm": "norm", "CumulativeLayerNorm": "norm",
    "ENCODINGS": "pcm", "decode_pcm": "pcm", "encode_pcm": "pcm", "PhaseVocoder": "phase",
    "GRU": "recurrent", "LSTM": "recurrent",
    "GroupedGRU": "recurrent", "StreamResampler": "resample", "resample": "resample", "LIF": "spiking",
    "SpikeFunction": "spiking", "spike": "spiking", "ISTFT": "stft", "STFT": "stft",
    **{name: "module" for name in ("AUDIO", "EVENTS", "FEATURES", "SOURCES", "TOKENS", "StreamingModule",
                                   "StreamingSequential")},
    **{name: "state" for name in ("State", "prefixed", "reset_rows", "select_rows", "split_state", "stack_states",
                                  "state_batch_size", "state_from_bytes", "state_to", "state_to_bytes", "sub_state")},
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


__all__ = [
    "AUDIO", "EVENTS", "FEATURES", "SOURCES", "TOKENS",
    "CausalAttention", "CausalConv1d", "CausalConvTranspose1d", "ChannelLayerNorm", "CumulativeLayerNorm", "FSMN",
    "GRU", "GroupedGRU", "ISTFT", "LIF", "LMUMemory", "LSTM", "PhaseVocoder", "STFT", "SpikeFunction", "spike",
    "State", "StreamingModule", "StreamingSequential",
    "prefixed", "reset_rows", "select_rows", "split_state", "stack_states", "state_batch_size",
    "state_from_bytes", "state_to", "state_to_bytes", "sub_state",
    "ENCODINGS", "Framer", "StreamResampler", "decode_pcm", "encode_pcm", "resample",
]
