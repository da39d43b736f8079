"""Root writes only below the directory it opened (issue 22, "writes that cannot be redirected").

Another user's process (uid 65534, a real one: the tests run it with setuid) swaps directories for
symbolic links while closebench writes, and a root-owned 0700 directory that the links point at
must stay untouched. Directories another user could change are refused, one line, exit 2.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from closebench.cli import main
from closebench.core.errors import UsageError
from closebench.core.safe_files import SafeDirectory
from closebench.core.trusted_paths import open_trusted_directory
from tests.test_faults import CLOSEBENCH, RUN

NOBODY = 65534
ROOT = Path(__file__).resolve().parent.parent
TINY = """\
name = "tiny"
duration = 2
sample_hz = 10
strategies = ["graceful"]

[[attackers]]
kind = "kernel"
timeout = 10
reconnect = true
concurrency = 1
rate = 10
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="another user's files need root")

# What keeps swapping every directory root makes in OUT for a link to TARGET, until STOP exists.
SWAPPER = textwrap.dedent(
    """
    import os, stat, sys, time
    out, target, stop = sys.argv[1:]
    swapped = 0
    while not os.path.exists(stop):
        for name in os.listdir(out):
            if name.startswith("moved-"):
                continue
            path = os.path.join(out, name)
            try:
                found = os.lstat(path)
            except FileNotFoundError:
                continue
            # A run directory once the run writes into it (swapped between its mkdir and its
            # open, it is never followed and the run takes another name).
            started = os.path.exists(os.path.join(path, "scenario.toml"))
            if stat.S_ISDIR(found.st_mode) and found.st_uid == 0 and started:
                try:
                    os.rename(path, os.path.join(out, f"moved-{swapped}"))
                    os.symlink(target, path)
                    swapped += 1
                except OSError:
                    pass
        time.sleep(0.0005)
    print(swapped)
    """
)


@pytest.fixture
def shared() -> Iterator[tuple[Path, Path]]:
    """(a directory uid 65534 owns, a root-owned 0700 directory with one file in it), both
    where uid 65534 can reach them (pytest's tmp_path is root's 0700)."""
    place = Path(tempfile.mkdtemp(prefix="closebench-shared-"))
    try:
        place.chmod(0o755)
        theirs, target = place / "theirs", place / "target"
        theirs.mkdir()
        os.chown(theirs, NOBODY, NOBODY)
        target.mkdir(mode=0o700)
        (target / "keep").write_text("root's\n")
        yield theirs, target
    finally:
        shutil.rmtree(place)


def untouched(target: Path) -> None:
    assert [p.name for p in target.iterdir()] == ["keep"]
    assert (target / "keep").read_text() == "root's\n"


def as_nobody(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv, user=NOBODY, group=NOBODY, extra_groups=[], **kwargs)


# the race: a real run into a directory its owner keeps changing


@pytest.mark.needs_lab
@pytest.mark.timeout(300)
def test_swapping_the_run_directory_cannot_redirect_the_run(shared, tmp_path):
    """uid 65534 owns --out (trusted here as the user who ran sudo, so the run is allowed) and
    swaps the run directory for a link to a root-only directory the moment it appears; every
    file of the run still lands in the directory root made, wherever it was moved."""
    out, target = shared
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    stop = out / "stop"
    python = shutil.which("python3", path="/usr/bin:/bin")  # not root's: uid 65534 runs it
    assert python, "the swapper needs a python3 any user can run"
    swapper = as_nobody(
        [python, "-c", SWAPPER, str(out), str(target), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        env = {**os.environ, "SUDO_UID": str(NOBODY), "SUDO_GID": str(NOBODY)}
        result = subprocess.run(
            [*CLOSEBENCH, "run", str(scenario), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            cwd=ROOT,
        )
    finally:
        stop.touch()
        swapped = int(swapper.communicate(timeout=30)[0])
    logs = [p.read_text() for p in out.glob("moved-*/run.log")]
    assert result.returncode == 0, (result.stderr, logs)
    assert swapped >= 1, "the swapper never swapped: the test proves nothing"
    untouched(target)
    [moved] = [p for p in out.iterdir() if p.name.startswith("moved-")]
    assert moved.stat().st_uid == 0
    written = {p.relative_to(moved).as_posix() for p in moved.rglob("*")}
    for name in ("scenario.toml", "run.log", "summary.json", "samples.csv", "summary.md"):
        assert name in written
    assert "index.html" in written and "pcaps/graceful.pcap" in written
    assert "attempts/graceful.parquet" in written
    assert any(name.startswith("figures/") for name in written)
    assert (moved / "pcaps" / "graceful.pcap").stat().st_size > 24  # more than a pcap header
    # latest names the run directory by the name root gave it (now the swapper's link).
    [swapped_name] = [p.name for p in out.iterdir() if p.is_symlink() and p.name != "latest"]
    assert os.readlink(out / "latest") == swapped_name


# refused: a place another user could change


def test_out_another_user_owns_is_refused(shared, tmp_path, monkeypatch, capsys):
    out, _ = shared
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    assert main(["run", str(scenario), "--out", str(out / "runs")]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert f"{out} could be changed by another user (it belongs to uid 65534)" in line, line
    assert "root will not write below it; give another --out" in line
    assert list(out.iterdir()) == [], "a refused --out must leave nothing behind"


@pytest.mark.parametrize(
    ("owner", "mode", "why"),
    [
        (0, 0o777, "anyone can write to it"),
        (NOBODY, 0o775, "group 65534 can write to it"),
        (0, 0o1777, None),  # sticky, like /tmp
        (0, 0o775, None),  # root's group
    ],
)
def test_which_directories_another_user_could_change(shared, monkeypatch, owner, mode, why):
    out, _ = shared
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    os.chown(out, 0, owner)
    out.chmod(mode)
    if why is None:
        SafeDirectory(out / "runs", create=True).close()
        return
    with pytest.raises(UsageError, match=f"could be changed by another user \\({why}\\)"):
        SafeDirectory(out / "runs", create=True)
    assert list(out.iterdir()) == []


def test_sticky_directories_and_their_links(shared):
    """A sticky directory owned by root (like /tmp) is accepted; a link in it is followed only
    when root (or the caller) owns it, as the kernel's fs.protected_symlinks does."""
    out, target = shared
    os.chown(out, 0, 0)
    out.chmod(0o1777)
    os.close(open_trusted_directory(out))
    (out / "planted").symlink_to(target)
    os.chown(out / "planted", NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(UsageError, match="is a link owned by uid 65534 in a directory anyone"):
        SafeDirectory(out / "planted" / "runs", create=True)
    untouched(target)
    (out / "mine").symlink_to(target)  # root's own link: followed
    with SafeDirectory(out / "mine") as followed:
        assert os.path.samestat(os.fstat(followed.fd), target.stat())
    # Their directory inside the sticky one: refused, wherever it leads.
    theirs = out / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UsageError, match="belongs to uid 65534"):
        SafeDirectory(theirs)


def test_sudo_users_directories_are_trusted(shared, monkeypatch):
    out, _ = shared
    monkeypatch.delenv("SUDO_UID", raising=False)
    with pytest.raises(UsageError, match="belongs to uid 65534"):
        SafeDirectory(out)
    monkeypatch.setenv("SUDO_UID", str(NOBODY))
    SafeDirectory(out).close()


# every writer goes through a directory opened once


def test_a_directory_once_opened_is_written_whatever_its_name_becomes(shared, monkeypatch):
    """Each way SafeDirectory writes, after the directory was moved and a link to a root-only
    directory put at its name (by uid 65534, its parent's owner, trusted as sudo's user)."""
    out, target = shared
    monkeypatch.setenv("SUDO_UID", str(NOBODY))
    made = out / "run"
    made.mkdir()
    with SafeDirectory(made) as run:
        swap = as_nobody(["sh", "-c", f"mv {made} {out}/moved && ln -s {target} {made}"])
        assert swap.wait(10) == 0
        run.write("summary.json", "{}\n")
        with run.open("run.log", "a") as log:
            log.write("line\n")
        with run.atomic("samples.csv") as samples:
            samples.write("t\n")
        with run.subdirectory("figures") as figures:
            figures.write("a.svg", b"<svg/>")
        run.new_subdirectory("pcaps").close()
        (run.anchor / "pcaps" / "x.pcap").write_bytes(b"pcap")  # a path through the descriptor
        run.symlink("summary.json", "latest")
    untouched(target)
    moved = out / "moved"
    found = sorted(p.relative_to(moved).as_posix() for p in moved.rglob("*"))
    assert found == [
        "figures",
        "figures/a.svg",
        "latest",
        "pcaps",
        "pcaps/x.pcap",
        "run.log",
        "samples.csv",
        "summary.json",
    ]


def refused(argv: list[str], place: Path, capsys) -> None:
    """`closebench ARGV` (in this process: no start-up cost) is one line, exit 2, naming `place`."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if "error:" in line]
    assert f"{place} could be changed by another user" in line, line


def test_report_export_and_compare_refuse_a_changeable_place(shared, monkeypatch, capsys):
    out, target = shared
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    run = out / "run"
    shutil.copytree(RUN, run)
    mine = Path(tempfile.mkdtemp(prefix="closebench-mine-"))
    try:
        mine_run = mine / "run"
        shutil.copytree(RUN, mine_run)
        refused(["report", str(run)], out, capsys)
        refused(["export", str(mine_run), "--jsonl", "--out", str(out / "a.jsonl")], out, capsys)
        refused(
            ["compare", str(mine_run), str(mine_run), "--html", str(out / "c.html")], out, capsys
        )
        assert not (run / "index.html").exists()
        assert sorted(p.name for p in out.iterdir()) == ["run"]
        # The same into a place only root can change: written.
        assert main(["export", str(mine_run), "--jsonl"]) == 0
        assert (mine_run / "attempts.jsonl").stat().st_size > 0
    finally:
        shutil.rmtree(mine)
    untouched(target)


def test_sample_attack_and_probe_refuse_a_changeable_place(shared, monkeypatch, capsys):
    out, _ = shared
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    for argv in (
        ["sample", "--pid", str(os.getpid()), "--out", str(out / "s"), "--duration", "0.2"],
        ["attack", "--strategy", "rst", "--records", str(out / "r.jsonl"), "--duration", "1"],
        ["attack", "--strategy", "rst", "--locust-csv", str(out / "l"), "--engine", "locust"],
        ["probe", "--strategy", "rst", "--pcap-dir", str(out / "p")],
    ):
        refused(argv, out, capsys)
    assert list(out.iterdir()) == []


def test_sample_writes_through_its_directory(tmp_path):
    argv = ["sample", "--pid", str(os.getpid()), "--out", str(tmp_path / "s"), "--duration", "0.3"]
    assert main(argv) == 0
    assert (tmp_path / "s" / "samples.csv").read_text().count("\n") >= 2
    assert stat.S_ISREG((tmp_path / "s" / "samples.csv").lstat().st_mode)


def test_a_run_that_cannot_start_leaves_nothing_behind(tmp_path, monkeypatch):
    """Emptied and removed through the descriptors it was made with (not by name)."""
    from closebench.core.errors import ClosebenchError
    from closebench.trials import runner
    from closebench.trials.scenario import load_scenario

    def no_room(_directory):
        raise ClosebenchError("no room")

    monkeypatch.setattr(runner, "DiskGuard", no_room)
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    scenario, text, digest = load_scenario(path)
    out = tmp_path / "reports"
    with pytest.raises(ClosebenchError, match="no room"):
        runner.Runner(scenario, text, digest, path, out)
    assert list(out.iterdir()) == []


def test_paths_walk_like_the_kernels(tmp_path, monkeypatch):
    """Relative paths, `..`, links (root's, relative and absolute) and missing components
    made on the way: the directory the kernel would open, or ELOOP for a loop."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "rel").symlink_to("a/b")
    (tmp_path / "abs").symlink_to(tmp_path / "a")
    (tmp_path / "loop").symlink_to("loop")
    monkeypatch.chdir(tmp_path / "a")
    for path in ("b", "../rel", str(tmp_path / "abs" / "b"), "./b/../b"):
        fd = open_trusted_directory(path)
        assert os.path.samestat(os.fstat(fd), (tmp_path / "a" / "b").stat()), path
        os.close(fd)
    os.close(open_trusted_directory(tmp_path / "rel" / "new" / "deeper", create=True))
    assert (tmp_path / "a" / "b" / "new" / "deeper").is_dir()
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        open_trusted_directory(tmp_path / "loop")
