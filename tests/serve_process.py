"""`slmchat-cli serve` in its own process, as another computer's model server would run: started
on a free loopback port, ready once it prints where it listens, stopped with Ctrl+C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    key: str | None
    banner: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def start_server(home: Path, *args: str | Path) -> Server:
    """Start `slmchat-cli serve` and wait for the line that says where it listens."""
    env = {**os.environ, "SLMCHAT_HOME": str(home)}
    process = subprocess.Popen([sys.executable, "-m", "slmchat.cli", "serve", "--port", "0", "--threads", "1",
                                *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    key = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                raise AssertionError(f"the server ended: {process.stderr.read()}")
            continue
        if line.startswith("API key"):
            key = line.rsplit(" ", 1)[1].strip()
        if line.startswith("Serving"):
            port = int(line.split("/v1")[0].rsplit(":", 1)[1])
            return Server(process, port, key, line)
    process.kill()
    raise AssertionError("the server did not say where it listens within 2 minutes")


def stop_server(server: Server) -> None:
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise
