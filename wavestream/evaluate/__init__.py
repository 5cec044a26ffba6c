"""wavestream.evaluate."""
