"""`retrieval-svc serve` as a child process on 127.0.0.1, for tests that must be able
to kill the server (crash tests) or must not wait for it to finish work nobody
waits for any more (fuzzing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SMALL_CHUNKS_ENV = {
    "RETRIEVAL_SVC_CHUNKER__WINDOW_TOKENS": "64",
    "RETRIEVAL_SVC_CHUNKER__OVERLAP_TOKENS": "8",
    "RETRIEVAL_SVC_EVALUATION__SCHEDULE_SECONDS": "0",
}


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the test process dies (Linux), so
    that a test killed by a timeout leaves no server behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ServedProcess:
    """One `python -m retrieval_svc.cli serve --data DIR --port 0 --metrics-port -1`."""

    def __init__(self, data: Path, log: Path, env: dict[str, str] | None = None,
                 start_timeout: float = 120.0) -> None:
        self.data, self.log = Path(data), Path(log)
        # PYTHONFAULTHANDLER: SIGABRT makes the server write every thread's stack to the log.
        environ = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONFAULTHANDLER": "1",
                   **SMALL_CHUNKS_ENV, **(env or {})}
        with open(self.log, "a") as out:
            out.write(f"--- start {time.strftime('%H:%M:%S')}\n")
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(self.data),
                 "--port", "0", "--metrics-port", "-1"],
                stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=REPO,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.pid = self.proc.pid
        self.target = self._wait_ready(start_timeout)

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.log.read_text(errors="replace").split("--- start")[-1].splitlines()
            for line in lines:
                if line.startswith("READY grpc="):
                    return line.split()[1].split("=", 1)[1]
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"server did not print READY within {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL this process (by its pid) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then, if it has not exited within `grace` seconds, SIGABRT (its
        threads' stacks go to the log, see stacks()) and SIGKILL.
        Returns the exit code of a clean exit, None when it had to be killed."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        os.kill(self.pid, signal.SIGABRT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        return None

    def stacks(self) -> str:
        """From the dump faulthandler wrote on SIGABRT: each thread's innermost frame
        and the frames in this project or in grpc's server (a compact picture of where it hangs)."""
        text = self.log.read_text(errors="replace").split("--- start")[-1]
        start = text.find("Fatal Python error: Aborted")
        if start < 0:
            return ""
        out, first = [], False
        for line in text[start:].splitlines():
            if line.startswith(("Thread 0x", "Current thread")):
                out.append(line.split(" (most recent")[0])
                first = True
            elif line.strip().startswith("File "):
                if first or "retrieval_svc" in line or "grpc/_server" in line:
                    out.append(line)
                first = False
        return "\n".join(out)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]
