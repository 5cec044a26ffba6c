"""wavestream.train."""
