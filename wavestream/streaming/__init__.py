"""wavestream.streaming: model-agnostic streaming machinery (state, causal layers, framing, resampling, PCM)."""

from .conv import CausalConv1d
from .framing import Framer
from .module import AUDIO, EVENTS, FEATURES, SOURCES, TOKENS, StreamingModule, StreamingSequential
from .norm import ChannelLayerNorm, CumulativeLayerNorm
from .pcm import ENCODINGS, decode_pcm, encode_pcm
from .recurrent import GRU, LSTM, GroupedGRU
from .resample import StreamResampler, resample
from .state import (
    State,
    prefixed,
    reset_rows,
    select_rows,
    split_state,
    stack_states,
    state_batch_size,
    state_from_bytes,
    state_to,
    state_to_bytes,
    sub_state,
)
from .stft import ISTFT, STFT

__all__ = [
    "AUDIO", "EVENTS", "FEATURES", "SOURCES", "TOKENS",
    "CausalConv1d", "ChannelLayerNorm", "CumulativeLayerNorm", "GRU", "GroupedGRU", "ISTFT", "LSTM", "STFT",
    "State", "StreamingModule", "StreamingSequential",
    "prefixed", "reset_rows", "select_rows", "split_state", "stack_states", "state_batch_size",
    "state_from_bytes", "state_to", "state_to_bytes", "sub_state",
    "ENCODINGS", "Framer", "StreamResampler", "decode_pcm", "encode_pcm", "resample",
]
