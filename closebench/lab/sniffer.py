"""A stand-in for tcpdump inside a user namespace:
`python -m closebench.lab.sniffer IFACE FILE SNAPLEN FILTER`.

tcpdump insists on dropping privileges to another user once it runs as uid 0, which a user
namespace mapping only root cannot do. This writes the same pcap with scapy: slower (thousands of
packets per second), but enough for probes and rate-capped spammers. It says "listening on" on
stderr once capturing, as tcpdump does, and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading


def main(args: list[str]) -> int:
    if len(args) != 4:
        print("usage: python -m closebench.lab.sniffer IFACE FILE SNAPLEN FILTER", file=sys.stderr)
        return 2
    interface, path, snaplen, bpf = args[0], args[1], int(args[2]), args[3]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())

    from scapy.sendrecv import AsyncSniffer
    from scapy.utils import PcapWriter

    # "-": into standard output, a file the caller opened (closebench/lab/capture.py).
    target = sys.stdout.buffer if path == "-" else path
    writer = PcapWriter(target, sync=True, snaplen=snaplen, linktype=1)

    def started() -> None:
        print(f"listening on {interface}", file=sys.stderr, flush=True)

    sniffer = AsyncSniffer(
        iface=interface, filter=bpf, prn=writer.write, store=False, started_callback=started
    )
    sniffer.start()
    stop.wait()
    sniffer.stop()
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
