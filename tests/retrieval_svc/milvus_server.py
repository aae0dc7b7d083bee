"""A real Milvus standalone server for tests: PyPI `milvus` (2.3.5: `milvus-server --data DIR`),
started on 127.0.0.1 and stopped by its process id with SIGINT. Dense only (no BM25 functions)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


# scripts/tools.sh (run by scripts/setup.sh) installs it here.
_INSTALLED = Path(__file__).resolve().parents[2] / ".venv-milvus" / "bin" / "milvus-server"


def _binary() -> str | None:
    if os.environ.get("MILVUS_SERVER"):
        return os.environ["MILVUS_SERVER"]
    return str(_INSTALLED) if _INSTALLED.exists() else shutil.which("milvus-server")


def milvus_server_available() -> bool:
    return _binary() is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusServer:
    def __init__(self, data: Path, start_timeout: float = 120.0) -> None:
        self.data = Path(data)
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "MilvusServer":
        binary = _binary()
        assert binary is not None
        self.log = open(self.data / "server.log", "wb")
        self.process = subprocess.Popen(
            [binary, "--data", str(self.data), "--proxy-port", str(self.port),
             # A Strong read waits for the proxy's next time tick (200 ms by default);
             # every ingest and search of the store makes several.
             "--extra-config", "proxy.timeTickInterval=20"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        from pymilvus import MilvusClient

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milvus-server exited with {self.process.returncode}; see {self.log.name}")
            try:
                client = MilvusClient(self.uri, timeout=2)
                client.list_collections()
                client.close()
                return self
            except Exception:
                time.sleep(1.0)
        self.__exit__(None, None, None)
        raise RuntimeError(f"milvus-server did not answer on {self.uri} in {self.start_timeout:.0f}s")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
