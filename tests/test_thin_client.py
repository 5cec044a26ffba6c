"""The Python client needs no torch: importing it (and the `stream` command) must not load the model stack."""

from __future__ import annotations

import subprocess
import sys

import wavestream.streaming


def test_the_client_imports_without_torch():
    code = ("import sys, wavestream.client, wavestream.client.commands_stream; "
            "loaded = [m for m in ('torch', 'hypothesis') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_streaming_name_still_resolves():
    for name in wavestream.streaming.__all__:
        assert getattr(wavestream.streaming, name) is not None


def test_the_command_line_imports_only_the_command_given():
    """`wavestream stream` (the client) loads no torch, and `wavestream models` no server stack."""
    for command, absent in (("stream", ("torch", "fastapi")), ("models", ("fastapi", "uvicorn"))):
        code = ("import sys; from wavestream.cli import main\n"
                f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
                f"loaded = [m for m in {absent!r} if m in sys.modules]; assert not loaded, loaded")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
