"""Python client for the wavestream WebSocket protocol v1 (docs/protocol.md)."""

from .stream_client import AsyncStreamClient, StreamClient, StreamError, StreamResult

__all__ = ["AsyncStreamClient", "StreamClient", "StreamError", "StreamResult"]
