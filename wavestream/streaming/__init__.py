"""wavestream.streaming."""
