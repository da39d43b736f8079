"""Run a command inside a lab host: `python -m closebench.lab.nsexec KEEPER_PID -- CMD...`.

Joining a PID namespace only takes effect for children, so this process joins the host's network
and PID namespaces, forks, and the child execs the command as a member of the host. The parent stays
outside, forwards signals to the child and exits with its status. If the host's keeper dies, the
kernel kills the child and this process follows; if this process dies, the child gets SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys

from closebench.lab.netns import CLONE_NEWNET, die_with_parent, setns

CLONE_NEWPID = 0x20000000
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print(
            "usage: python -m closebench.lab.nsexec KEEPER_PID -- COMMAND [ARG...]", file=sys.stderr
        )
        return 2
    keeper = int(args[0])
    command = args[2:]
    setns(f"/proc/{keeper}/ns/net", CLONE_NEWNET)
    setns(f"/proc/{keeper}/ns/pid", CLONE_NEWPID)
    child = os.fork()
    if child == 0:
        try:
            die_with_parent()  # this launcher killed alone (kill -9) takes the command with it
            os.execvp(command[0], command)
        except OSError as error:
            print(f"closebench: cannot run {command[0]!r}: {error.strerror}", file=sys.stderr)
            os._exit(127)
    for signum in FORWARDED:
        signal.signal(signum, lambda received, _frame: os.kill(child, received))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            return 1
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
