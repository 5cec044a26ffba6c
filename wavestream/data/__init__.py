"""wavestream.data."""
