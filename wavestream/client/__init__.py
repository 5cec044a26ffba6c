"""wavestream.client."""
