"""The attacker hosts' kernel sockets at their peak during a trial: what the attack costs the
attackers' own kernels (trials/trial.py samples them beside the attack)."""

from __future__ import annotations

import threading
from collections import Counter

from closebench.core.faults import Faults
from closebench.lab import Lab
from closebench.lab.socket_table import state_summary

SAMPLE_EVERY = 0.2  # seconds between looks at the attacker host's kernel sockets


class AttackerHostSampler:
    """Peaks of the attacker hosts' kernel sockets: what the attack costs the attackers' kernels."""

    def __init__(self, lab: Lab, faults: Faults) -> None:
        self.lab = lab
        self.peak_sockets = 0
        self.peak_by_state: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=faults.guarded("the attacker hosts' sampler", self._loop), daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            counts: Counter[str] = Counter()
            for host in self.lab.attacker_hosts:  # every machine of the attack
                counts.update(state_summary(host)[0])
            self.peak_sockets = max(self.peak_sockets, sum(counts.values()))
            for state, count in counts.items():
                self.peak_by_state[state] = max(self.peak_by_state.get(state, 0), count)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_kernel_sockets": self.peak_sockets, "peak_by_state": self.peak_by_state}
