"""``segment dashboard``: check the run directories, start ``streamlit run`` as a subprocess (on
127.0.0.1 unless told otherwise), wait until it answers ``/_stcore/health``, print the URL, and
serve until Ctrl-C (or SIGTERM), stopping the server with it.

Everything that can be refused is refused before the server starts, in one line (exit 2): no
Streamlit (the ``dashboard`` extra), a run directory that is missing, newer or half-written
(``rundata.check_run_dir``), a bad or busy port.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.dashboard.rundata import check_run_dir
from engine.errors import InputError

RUN_ENV = "SEGMENT_DASHBOARD_RUN"
COMPARE_ENV = "SEGMENT_DASHBOARD_COMPARE"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ASGI = Path(__file__).with_name("asgi.py")
START_SECONDS = 90.0
NEEDS_EXTRA = ("segment dashboard needs Streamlit, which is not installed: "
               "pip install 'segment-engine[dashboard]' (the dashboard extra)")


def have_streamlit() -> bool:
    if "streamlit" in sys.modules:
        return sys.modules["streamlit"] is not None
    return importlib.util.find_spec("streamlit") is not None


def check_address(host: str, port: int) -> None:
    """The port is a number in 1..65535 that is free on ``host``."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be between 1 and 65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"--port {port}: cannot listen on {host} ({exc.strerror.lower()})") from None


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def streamlit_command(host: str, port: int) -> list[str]:
    """``streamlit run asgi.py`` headless, without telemetry, file watching or error details."""
    options = {"server.address": host, "server.port": port, "server.headless": "true",
               "browser.gatherUsageStats": "false", "server.fileWatcherType": "none", "server.runOnSave": "false",
               "client.toolbarMode": "minimal", "client.showErrorDetails": "none",
               "global.developmentMode": "false", "logger.level": "error", "theme.base": "light"}
    return [sys.executable, "-m", "streamlit", "run", str(ASGI), *(f"--{k}={v}" for k, v in options.items())]


def prepare(run_dir: str | Path, host: str, port: int, compare: str | Path | None) -> tuple[list[str], dict[str, str]]:
    """Every check made before the server starts; the command and its environment."""
    if not have_streamlit():
        raise InputError(NEEDS_EXTRA)
    run = check_run_dir(run_dir).resolve()
    env = {**os.environ, RUN_ENV: str(run)}
    env.pop(COMPARE_ENV, None)
    if compare is not None:
        other = check_run_dir(compare).resolve()
        if other == run:
            raise InputError(f"--compare {compare} is the run itself; name another run directory")
        env[COMPARE_ENV] = str(other)
    check_address(host, port)
    return streamlit_command(host, port), env


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_up(process: subprocess.Popen, url: str, seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InputError(f"the dashboard server stopped before serving (exit code {process.returncode})")
        if healthy(url):
            return
        time.sleep(0.2)
    raise InputError(f"the dashboard server did not answer {url}/_stcore/health within {seconds:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def serve(run_dir: str | Path, port: int = 8501, host: str = "127.0.0.1", compare: str | Path | None = None,
          echo: Callable[[str], None] = print, warn: Callable[[str], None] | None = None) -> int:
    """Serve the dashboard of ``run_dir`` until Ctrl-C; returns the exit code (0 after Ctrl-C)."""
    warn = warn or echo
    command, env = prepare(run_dir, host, port, compare)
    if host not in LOCAL_HOSTS:
        warn(f"warning: --host {host}: the dashboard, and the customer data it shows, is visible to every "
             "machine that can reach this address")
    probe = url_of("127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host, port)
    previous = signal.signal(signal.SIGTERM, interrupt)  # stop the server with us, not only on Ctrl-C
    # its own session: Ctrl-C reaches us, and we stop the server (SIGTERM), which then exits quietly
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(process, probe)
        echo(f"dashboard of {env[RUN_ENV]} at {url_of(host, port)} (Ctrl-C to stop)")
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(process)
        signal.signal(signal.SIGTERM, previous)
