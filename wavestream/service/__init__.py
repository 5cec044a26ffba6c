"""wavestream.service."""
