"""wavestream: causal, stateful neural audio models served chunk by chunk."""

__version__ = "0.1.0"
