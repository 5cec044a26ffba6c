"""The page as compose serves it: Chromium -> docker/nginx.conf (a real nginx) -> two real servers
that need an API key. The browser sends the key in the URL (it cannot set WebSocket headers): the
stream must pass the proxy's WebSocket upgrade, and the key must stay out of the proxy's log."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.service.conftest import free_port, running_server
from tests.service.test_browser import KEY, browser, figures, playwright_api, wait_for  # noqa: F401 (fixtures)
from tests.test_docker import nginx_binary, proxy_config
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="no nginx (`make install-dev` unpacks Debian's "
                                                                "into the venv)")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    with running_server(tmp / "a", api_keys=[KEY]) as a, running_server(tmp / "b", api_keys=[KEY]) as b:
        listen = free_port()
        (tmp / "nginx.conf").write_text(proxy_config([a.settings.port, b.settings.port], listen, tmp))
        nginx = subprocess.Popen([nginx_binary(), "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                                  "-g", f"daemon off; pid {tmp / 'nginx.pid'}; error_log stderr;"])
        try:
            wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", listen)) == 0, "nginx did not start", nginx)
            yield f"http://127.0.0.1:{listen}", tmp / "access.log", (a, b)
        finally:
            nginx.terminate()
            nginx.wait(timeout=30)


def test_browser_page_streams_through_the_proxy(browser, proxy):  # noqa: F811 (fixture)
    url, log, servers = proxy
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{url}/?api_key={KEY}")
        wait_for(page, "s.models.length > 0")
        page.select_option("#model", "enhance")
        page.click("#start")
        wait_for(page, "s.receivedFrames > s.sampleRate && document.getElementById('latency').textContent !== '–'")
        page.click("#stop")
        wait_for(page, "s.status === 'done' && s.closeCode !== null")  # `done`, then the close frame
        state = figures(page)
        assert state["receivedFrames"] == state["sentFrames"] > 0 and state["closeCode"] == 1000
    finally:
        page.close()
    assert not errors, errors
    text = log.read_text()
    assert "GET /v1/stream" in text and "/static/worklets.js" in text and KEY not in text
    for server in servers:
        server.wait_idle()
