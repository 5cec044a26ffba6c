"""wavestream.engine."""
