"""closebench's attacker on Locust's distributed runners: a master and workers, one per machine.

The Locust user (user.py) runs the kernel spammer's policy with gevent sockets and sends its attempt
records to the master in batches; the master (master.py, a child of closebench) relays them on its
stdout to the engine (engine.py), which hands them to the trial like any attacker. Locust is an
optional extra: nothing here imports it until an attack asks for the Locust engine.
"""

from __future__ import annotations

import importlib.util

from closebench.core.errors import EnvironmentProblem

EXTRA = "closebench[locust]"


def require_locust() -> None:
    """One clear error (exit 2) when the optional extra is not installed."""
    if importlib.util.find_spec("locust") is None:
        raise EnvironmentProblem(
            f"the Locust engine needs Locust, an optional extra: pip install '{EXTRA}' "
            "(in a checkout, ./setup.sh --install installs it)"
        )
