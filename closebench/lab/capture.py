"""tcpdump on one interface of a lab host, writing a pcap file (read back by closebench/wire/).

The file is opened here, never through a link (O_NOFOLLOW; a run's pcaps/ is reached through the
run directory's descriptor, closebench/core/safe_files.py), and tcpdump writes to it as its
standard output (`-w -`): tcpdump itself opens nothing by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from closebench.core.errors import LabError
from closebench.core.readable import readable
from closebench.core.safe_files import shown, write_error
from closebench.lab import Host
from closebench.lab.privileges import IN_USERNS_ENV

SNAPLEN = 256  # headers plus the start of the payload; enough to read every decision


class Capture:
    """tcpdump on one interface of a host, writing a pcap file until stop()."""

    def __init__(self, host: Host, interface: str, bpf: str, path: str) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            output = os.open(path, flags, 0o644)
        except OSError as error:
            raise write_error(Path(shown(path)), error) from None
        # --immediate-mode: without it libpcap hands packets over in blocks, and whatever is still
        # in the ring when tcpdump is stopped is lost.
        try:
            self._process = host.spawn(
                capture_argv(interface, "-", bpf),
                side="attackers",  # the capture is the harness's work, not the defender's
                stdout=output,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(output)  # tcpdump has its own copy
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        # tcpdump says "listening on" once its socket is bound: packets from then on are kept.
        deadline = time.monotonic() + 10
        stream = self._process.stderr
        assert stream is not None  # opened with stderr=PIPE
        seen = b""
        while time.monotonic() < deadline:
            if readable(stream.fileno(), 0.1):
                chunk = os.read(stream.fileno(), 4096)
                seen += chunk
                if b"listening on" in seen:
                    return
                if not chunk:
                    break
        self._process.kill()
        self._process.wait()
        raise LabError(f"tcpdump did not start capturing: {seen.decode(errors='replace').strip()}")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()


def capture_argv(interface: str, path: str, bpf: str) -> list[str]:
    """The capture's command line; `path` "-": the pcap goes to standard output."""
    if os.environ.get(IN_USERNS_ENV):
        # tcpdump cannot drop privileges in a user namespace that maps only root.
        return [sys.executable, "-m", "closebench.lab.sniffer", interface, path, str(SNAPLEN), bpf]
    return [
        *("tcpdump", "-i", interface, "--immediate-mode", "-U", "-n", "-Z", "root"),
        *("-s", str(SNAPLEN), "-w", path, bpf),
    ]
