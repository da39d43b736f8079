"""The bounds on what one input may ask for (docs/reference/limits-and-errors.md says why).

A small file or command line must not ask for unbounded work (60,000 trials, a request delay of
1e300 s, a 100 KB label on every page): each bound is checked when the input is read, before
anything is built, and a value past it is bad input naming the key.
"""

from __future__ import annotations

MAX_SECONDS = 86400.0  # any one time value of an attack (timeout, duration, delay): a day
MAX_SCENARIO_SECONDS = 3600.0  # a scenario's duration, and its attackers' delays and timeouts
MAX_TRIALS = 1000  # a run's trials: strategies x repetitions x sweep steps
MAX_STRATEGIES = 200  # a scenario's strategies (each a lab of its own)
MAX_ATTACKERS = 32  # a scenario's attackers (each a thread or a process of its own)
MAX_LABEL = 200  # characters of a label or a scenario's name: it names files and rows
MAX_DESCRIPTION = 4000  # characters of a scenario's description: it is shown on every page
MAX_SCENARIO_BYTES = 1 << 20  # a scenario file
MAX_PATH = 4096  # bytes of a request path
MAX_ABUSE_PATH = 1024  # bytes of the abuse path regex (nginx reads a config token of 4 KB at most)
MAX_NOFILE = 1 << 20  # the server's open files: the kernel's default fs.nr_open
MAX_BACKLOG = (1 << 31) - 1  # listen()'s backlog is a C int
MAX_STRATEGY_SECONDS = 86400.0  # a strategy's delay, interval or ban time
