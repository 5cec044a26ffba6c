"""`pip install ./client` (wavestream-client): the client's own files, from the same source, without torch.

The wheel is built offline with the setuptools already installed, in a scratch copy of client/ (so
that no build/ or egg-info lands in the checkout), then unpacked and imported with torch blocked and
without the checkout on the path: a client module that imports something the wheel lacks fails here.
"""

from __future__ import annotations

import email
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import wavestream

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    scratch = tmp_path_factory.mktemp("client-build")
    (scratch / "client").mkdir()
    shutil.copy(ROOT / "client" / "pyproject.toml", scratch / "client")
    (scratch / "wavestream").symlink_to(ROOT / "wavestream")  # what client/pyproject.toml finds at ../wavestream
    build = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", build, str(scratch / "dist")], cwd=scratch / "client", check=True,
                         capture_output=True, text=True)
    return scratch / "dist" / out.stdout.split()[-1]


def test_the_client_wheel_holds_the_client_and_requires_no_torch(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.message_from_bytes(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    client_modules = {f"wavestream/client/{path.name}" for path in (ROOT / "wavestream" / "client").glob("*.py")}
    assert client_modules <= names
    assert not any(name.startswith(("wavestream/models/", "wavestream/engine/", "wavestream/train/")) for name in names)
    assert metadata["Name"] == "wavestream-client" and metadata["Version"] == wavestream.__version__
    requires = metadata.get_all("Requires-Dist")
    assert not any(r.startswith("torch") for r in requires), requires
    full = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(requires) <= set(full), "client/pyproject.toml pins differ from pyproject.toml's"


def test_the_unpacked_client_imports_and_runs_without_torch(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    # -S: no site processing, so the checkout's editable install is not on the path; numpy & co. come
    # from the site-packages directories given
    code = """
import sys
unpacked, *site_dirs = sys.argv[1:]
sys.path[:0] = [unpacked]
sys.path += site_dirs
sys.modules["torch"] = sys.modules["hypothesis"] = None  # importing either now fails
import wavestream.client, wavestream.client.commands_stream
from wavestream.cli import main
try:
    main(["stream", "--help"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
assert main(["models"]) == 2  # not in this distribution: says so
outside = [m.__file__ for name, m in sys.modules.items()
           if name.startswith("wavestream") and not m.__file__.startswith(unpacked)]
assert not outside, outside
"""
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path), *site.getsitepackages()],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: wavestream stream" in result.stdout
    assert "`models` is not available" in result.stderr
