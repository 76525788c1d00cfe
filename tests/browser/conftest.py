"""The demo page in a real browser: a real ``voxgate serve`` process, Debian Chromium.

Each gateway is ``python -m voxgate serve`` on a free loopback port, with the environment's
``VOXGATE_*``/``VOXTRAL_*`` settings removed (so the embedded engine speaks and the dev
endpoints are on) plus the overrides a test needs. Chromium is driven by Playwright's async
API with ``executable_path``; no Playwright-managed browser is used. Every test using
``tab`` leaves a screenshot named after it in ``test-artifacts/``, and every gateway its log.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("playwright.async_api", reason="needs Python Playwright (the test extras)")
from playwright.async_api import Page, ViewportSize, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def voxgate_serve(name: str, ready_path: str = "/readyz", **env: str) -> Iterator[Gateway]:
    """``voxgate serve`` in a subprocess until the block ends; ``ready_path`` must answer 200."""
    port = free_port()
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("VOXGATE_", "VOXTRAL_"))
    }
    environment.update({"VOXGATE_DRAIN_TIMEOUT": "2", **env})
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"voxgate-serve-{name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "voxgate", "serve", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_answering(url + ready_path, process, log)
            yield Gateway(url, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"voxgate serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"voxgate serve did not answer {url} within {START_TIMEOUT_S:g} s")


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """The defaults a new user gets: embedded engine, in-process store, dev endpoints on."""
    with voxgate_serve("default") as served:
        yield served


@pytest.fixture(scope="module")
def gateway_without_dev_tokens() -> Iterator[Gateway]:
    with voxgate_serve("dev-tokens-off", VOXGATE_DEV_TOKENS="off") as served:
        yield served


@pytest.fixture(scope="module")
def gateway_with_upstream_down() -> Iterator[Gateway]:
    """An upstream URL nobody listens on: /readyz says 503, so wait for /healthz."""
    dead = f"http://127.0.0.1:{free_port()}"
    with voxgate_serve(
        "upstream-down", "/healthz", VOXTRAL_API_KEY="unused", VOXTRAL_BASE_URL=dead
    ) as served:
        yield served


# Not called "page": an installed pytest-playwright plugin would take that name over.
@pytest.fixture
async def tab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Page]:
    """A fresh Chromium profile and page; a screenshot of it is saved when the test ends."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        browser_page = context.pages[0] if context.pages else await context.new_page()
        errors: list[str] = []
        browser_page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield browser_page
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            await browser_page.screenshot(path=ARTIFACTS / f"{request.node.name}.png")
            # Hang up, so the gateway frees the session now rather than at its ICE timeout.
            await browser_page.evaluate("() => window.voxgate?.hangup()")
            await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
