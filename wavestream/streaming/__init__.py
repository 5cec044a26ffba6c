"""wavestream.streaming: model-agnostic streaming machinery (state, causal layers, framing, resampling, PCM)."""

from .attention import CausalAttention
from .conv import FSMN, CausalConv1d, CausalConvTranspose1d
from .framing import Framer
from .lmu import LMUMemory
from .module import AUDIO, EVENTS, FEATURES, SOURCES, TOKENS, StreamingModule, StreamingSequential
from .norm import ChannelLayerNorm, CumulativeLayerNorm
from .pcm import ENCODINGS, decode_pcm, encode_pcm
from .recurrent import GRU, LSTM, GroupedGRU
from .resample import StreamResampler, resample
from .spiking import LIF, SpikeFunction, spike
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
    "CausalAttention", "CausalConv1d", "CausalConvTranspose1d", "ChannelLayerNorm", "CumulativeLayerNorm", "FSMN",
    "GRU", "GroupedGRU", "ISTFT", "LIF", "LMUMemory", "LSTM", "STFT", "SpikeFunction", "spike",
    "State", "StreamingModule", "StreamingSequential",
    "prefixed", "reset_rows", "select_rows", "split_state", "stack_states", "state_batch_size",
    "state_from_bytes", "state_to", "state_to_bytes", "sub_state",
    "ENCODINGS", "Framer", "StreamResampler", "decode_pcm", "encode_pcm", "resample",
]
