"""
sandbox.py — run model-written Python in a throw-away, contained process and say whether it passed, and if not, why.

Where it sits in ILR (arXiv 2509.26306): the paper evaluates every trained model alone on MBPP (code, out of
domain), and during RL the same grader is the reward. evaluate.py extracts the code block from a completion and
hands `run_code` the program (the code, then the benchmark's setup code) and the tests (its asserts). Nothing in
this file is from the paper: it is the safety harness that lets us execute untrusted code, written by a policy
REWARDED for passing, on the machine that trains the models. The child's own code is sandbox_child.py.

    from sandbox import run_code, run_many
    run_code("def f(x):\\n    return x + 1", tests="assert f(1) == 2").reason    # 'passed'
    run_code("while True: pass", timeout=1.0).reason                         # 'timeout'
    run_many([prog_a, prog_b, ...], workers=2)                               # in parallel, input order kept
    describe_sandbox()                                # which containment this machine gives (also in summaries)

Tests: `pytest tests/test_sandbox.py` — one test per attack: infinite loop, sys.exit / os._exit before the asserts,
KeyboardInterrupt, memory bomb, fork bomb, output flood, writes / deletes outside the box (open, _io.FileIO,
os.mkdir, ctypes, the guard's own wrappers), one program rewriting another's, reading the benchmark files,
loopback network, the parent's environment and the user's files as an ordinary user, reward hacks, limits.

How one program runs (each line is a layer; the later ones hold even if the earlier ones are bypassed):
1. Its own process: `python -I -S -B` (isolated: no PYTHON* variables, no site-packages: the standard library
   only, no .pyc writes), the base interpreter (not a venv's), in its own session so the whole group can be
   killed; stdin /dev/null; a minimal environment (PATH, HOME = TMPDIR = its scratch folder, LANG).
2. Its own box: `box/` (ours, mode 711) holds `program.py` (ours, read-only to the program) and `scratch/` (the
   program's, 700), the only place it may write; all removed afterwards.
3. OS-level containment, the strongest this machine allows (`isolation()`, probed once by running a program):
   "namespaces" (`unshare` of util-linux: user (unless we are root), mount, net, pid, ipc, uts namespaces): the
     program sees a private root file system: read-only binds of /usr, /bin, /lib*, the interpreter's folder,
     its box (read-only), a 16 MB tmpfs as its scratch, 4 /dev nodes, its own /proc; nothing else of the machine.
     No network interface but a loopback that is down. It then has no capabilities (bounding set dropped,
     capset to zero, no_new_privs), so it cannot mount, chroot out or regain them; as root, it also runs under a
     uid of its own (WORKER_UID_BASE + n, one per program).
   "uid" (root, but namespaces unavailable): a uid of its own per program, so the OS refuses it the files of the
     other programs and ours (program.py is ours, 440, readable by its group only).
   "none" (not root and no namespaces): our own user; only layers 4-6 hold.
4. Resource limits (`setrlimit`, by the child before the program runs): CPU seconds, address space, file size
   (also caps stdout/stderr: they are files), processes = 0 (no fork, no threads), core files = 0.
   OURS: set in the child rather than in `preexec_fn`, documented unsafe when the parent has threads.
5. A guard (Python-level, in the spirit of OpenAI human-eval's `reliability_guard`): process creation, chmod /
   chown / links, os._exit, setrlimit refused; writes, deletes, mkdir and chdir allowed only inside scratch;
   ctypes not importable. A determined program undoes it (the wrappers hand back the real functions through
   their closures, `_io.FileIO` writes directly, ctypes can be re-imported); it makes ordinary mistakes fail
   loudly, and layers 3, 4, 6 hold without it.
6. A wall-clock timeout in the parent kills the process group and the child (SIGKILL); under namespaces the
   child also dies with `unshare` (parent-death signal) and with it its whole pid namespace.

What is contained, by machine (each line is a test in tests/test_sandbox.py; skipped where the layer is absent):
| attack                                        | namespaces | uid (root only)      | none (user, no ns)  |
| another program's files (rewrite program.py)  | contained  | contained            | NOT (guard only)    |
| writing / deleting the machine's files        | contained  | only what all may    | NOT: the user's     |
| reading benchmark gold, the user's files      | contained  | NOT world-readable   | NOT                 |
| network, loopback included                    | contained  | NOT                  | NOT                 |
| other processes, /proc/<ppid>/environ         | contained  | contained (other uid)| NOT                 |
| fork / threads, CPU, memory, output, time     | contained  | contained            | contained (rlimits) |
| filling the disk (many 1 MB files)            | 16 MB tmpfs| NOT (bounded by time)| NOT (idem)          |
Namespaces need util-linux `unshare` and, when not root, unprivileged user namespaces (on by default in most
distributions; Ubuntu 24.04's AppArmor restriction or a container's seccomp profile turn them off: then "none").
Not used: seccomp. PyPI's bindings are either unmaintained (pyseccomp, last release 2021) or new and little used
(seccompy 0.2); a dependency for it did not seem worth it, as namespaces without capabilities already remove what
a syscall filter would guard here. The kernel itself is
shared: a kernel exploit escapes every layer; this is a harness against reward hacking and accidents, not a
hardened jail (use gVisor or a VM for that).

When does a program pass? Only when the child reaches the end of the program and of every test, and writes a
random nonce that only it has, read from a pipe the parent closed, to a result file the program did not open.
A `sys.exit(0)` / `os._exit(0)` / `raise SystemExit` before the end never counts, nor does printing "passed".
Reward hacks (sandbox_child.py, step 5) closed: the tests run after the program, each on its own, against copies
of the builtins and of the modules tests use (math, re, collections, ...) taken before the program ran, and
every value a program function returns to a test must be plain data (bool/int/float/complex/str/bytes/None and
list/tuple/dict/set/frozenset of them; Counter, OrderedDict, defaultdict as a dict): a result whose `__eq__` is
always True (also in a list, an int subclass, a metaclass), a patched `math.isclose` or builtin, a swapped
`sys.modules['math']`, and a patch made while a test calls the function, all fail. NOT closed: a program that
walks the interpreter's frames or `gc` (it can find the nonce or the tests' namespace); reading the asserts'
literals (the first is in MBPP's prompt; the rest are on the child's command line) and returning them; a
program function named like a builtin (`def set`) that a test calls (the program's names win, as in Python:
MBPP task 126 names its function `sum`).

Outcome reasons: passed | assertion | timeout | memory | syntax | error | output (stdout+stderr hit the cap).

Choices (ours):
1. Defaults: wall timeout 5 s, CPU limit = wall timeout + 1 s, address space 1024 MB, output and file size cap
   1 MB. Floors (`check_limits`): 1 s and 64 MB, measured on MBPP's gold programs; below them run_code and
   evaluate.grade_code raise ValueError with one line.
2. The candidate's module name is "__sandbox__", not "__main__", so `if __name__ == "__main__":` demo blocks
   (which often call input()) do not run, as in human-eval's exec-based harness.
3. Parallelism: a thread pool of `os.cpu_count()` workers, each waiting on one subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REASONS = ("passed", "assertion", "timeout", "memory", "syntax", "error", "output")
DEFAULT_TIMEOUT = 5.0         # seconds of wall time per program (issue 3)
DEFAULT_MEMORY_MB = 1024      # address space; the interpreter alone maps ~30 MB
DEFAULT_MAX_OUTPUT = 1 << 20  # bytes: cap on stdout, on stderr and on any file the program writes
MIN_TIMEOUT = 1.0             # s: at 0.1 s 30 of MBPP's 500 gold programs time out, at 1 s only task 123 under load
MIN_MEMORY_MB = 64            # MB: MBPP's gold needs 20 (all pass; at 16 all fail), x3 for other interpreter builds
WORKER_UID_BASE = 1_879_048_192   # uids for programs when we are root: far above real users' and subuid ranges
WORKER_UIDS = 4096                # one per program, reused after this many
CHILD = Path(__file__).with_name("sandbox_child.py")
SYSTEM_BINDS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc/ld.so.cache")
_uids = itertools.count()


def check_limits(memory_mb: float, timeout: float) -> None:
    """Refuse limits under which even MBPP's gold programs fail (they would score ~0 % without a word). Measured
    by grading the gold programs (evaluate.grade_many, 2 workers, 2026-12-03, load ~5 on 2 cores) at lower and
    lower limits: address space 20 MB 500/500, 16 MB 2/500, 12 MB 0/500; wall time 1 s 499/500, 0.1 s 470/500.

    >>> check_limits(memory_mb=8, timeout=5)
    Traceback (most recent call last):
    ValueError: --memory-mb 8: must be at least 64 (MB of address space the interpreter needs to run MBPP's gold programs)
    """  # noqa: E501 (a doctest's expected output is one line)
    if not memory_mb >= MIN_MEMORY_MB:
        raise ValueError(f"--memory-mb {memory_mb:g}: must be at least {MIN_MEMORY_MB} (MB of address space the "
                         f"interpreter needs to run MBPP's gold programs)")
    if not timeout >= MIN_TIMEOUT:
        raise ValueError(f"--timeout {timeout:g}: must be at least {MIN_TIMEOUT:g} (seconds the interpreter needs "
                         f"to start and run MBPP's gold programs)")


@dataclass
class SandboxResult:
    """Outcome of one program. `passed` is True only if every line ran (the runner's nonce came back)."""
    passed: bool
    reason: str        # one of REASONS
    message: str       # short detail: the failing line, the exception, the signal
    stdout: str        # at most max_output bytes, decoded with errors="replace"
    stderr: str
    returncode: int | None
    seconds: float     # wall time, interpreter start-up included


# ----------------------------------------------------------------------------------------------------------
# Who runs the code, with which interpreter (probed once per process)
# ----------------------------------------------------------------------------------------------------------

def _interpreter() -> str:
    """The base interpreter (not a virtual environment's wrapper): programs get the standard library only."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(exe) if os.path.exists(exe) else os.path.realpath(sys.executable)


def _reachable_interpreter(uid: int) -> str | None:
    """An interpreter that `uid` can run (ours may live under /root, mode 700), or None."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for exe in (_interpreter(), f"/usr/bin/{version}", f"/usr/local/bin/{version}", "/usr/bin/python3",
                "/usr/local/bin/python3"):
        try:
            probe = subprocess.run([exe, "-I", "-S", "-B", "-c", "import resource, json, ast"], cwd="/",
                                   user=uid, group=uid, extra_groups=[], env={}, stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return exe
    return None


@lru_cache(maxsize=1)
def isolation() -> str:
    """Which OS-level containment this machine gives (probed once per process, by running one program):
    "namespaces" (private file system, no network, own pid space, no capabilities; with a uid of its own as well
    when we are root), "uid" (root without namespaces: a uid of its own), "none" (our own user: the guard only)."""
    if shutil.which("unshare") and run_code("assert open('/proc/1/cmdline').read()", contain="namespaces").passed:
        return "namespaces"
    if os.geteuid() == 0 and _reachable_interpreter(WORKER_UID_BASE) is not None:
        return "uid"
    return "none"


def describe_sandbox() -> str:
    """One line for logs and summaries: how candidate code is contained on this machine."""
    return {"namespaces": "namespaces (private root file system, no network, own pids, no capabilities)"
                          + (", a uid per program" if os.geteuid() == 0 else ""),
            "uid": "a uid per program (no namespaces: network and world-readable files reachable)",
            "none": f"our own user, uid {os.geteuid()} (no namespaces: Python-level guard only)"}[isolation()] \
        + f"; {_interpreter()}"


# ----------------------------------------------------------------------------------------------------------
# Running one program
# ----------------------------------------------------------------------------------------------------------

def _limits(timeout: float, memory_mb: int, max_output: int) -> dict:
    return {"RLIMIT_CPU": int(timeout) + 1,           # CPU seconds; SIGXCPU after that (reason "timeout")
            "RLIMIT_AS": memory_mb * 1024 * 1024,      # address space (reason "memory" on MemoryError)
            "RLIMIT_FSIZE": max_output,                # any file written, stdout/stderr included
            "RLIMIT_NPROC": 0,                         # no fork / no threads (enforced for non-root users)
            "RLIMIT_CORE": 0}                          # no core dumps


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for the child to exit WITHOUT reaping it (so its pid / process-group id cannot be reused before we
    kill the group). Returns True if it timed out."""
    deadline, pause = time.monotonic() + timeout, 0.002
    while True:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return False
        except ChildProcessError:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _read(f, limit: int) -> bytes:
    f.seek(0)
    return f.read(limit)


def _outcome(result_bytes: bytes, nonce: str) -> dict | None:
    """The runner's last well-formed JSON line (candidate junk before it is ignored)."""
    for line in reversed(result_bytes.decode("utf-8", "replace").splitlines()):
        try:
            outcome = json.loads(line)
        except ValueError:
            continue
        if isinstance(outcome, dict) and outcome.get("reason") in REASONS:
            if outcome["reason"] == "passed" and outcome.get("nonce") != nonce:
                return {"reason": "error", "message": "forged pass signal (wrong nonce)"}
            return outcome
    return None


def _classify(timed_out: bool, returncode: int, outcome: dict | None, output_full: bool, stderr: str,
              timeout: float) -> tuple[str, str]:
    """(reason, message), in order of precedence."""
    if outcome is not None and outcome["reason"] == "passed":
        return "passed", ""
    if output_full:                                  # before timeout: a flood that then spins is a flood
        return "output", "stdout/stderr reached the output cap"
    if timed_out:
        return "timeout", f"killed after {timeout:g} s of wall time"
    if returncode == -signal.SIGXCPU:
        return "timeout", "CPU time limit exceeded"
    if outcome is not None:
        return outcome["reason"], outcome.get("message", "")
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory", stderr.strip().splitlines()[-1][:300]
    if returncode < 0:
        return "error", f"killed by signal {signal.Signals(-returncode).name}"
    return "error", f"exited with code {returncode} before the end of the program"


@lru_cache(maxsize=1)
def _child_source() -> str:
    return CHILD.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _uid_interpreter() -> str:
    return _reachable_interpreter(WORKER_UID_BASE) or _interpreter()


def _binds(exe: str) -> list[str]:
    """What the private root file system shows, read-only: system programs and libraries, the interpreter."""
    prefixes = {os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(exe))}
    return list(SYSTEM_BINDS) + sorted(p for p in prefixes if p != "/" and not p.startswith("/usr/"))


def _make_box(program: str, uid: int | None, with_root: bool) -> str:
    """box/ (ours, mode 711) holding program.py (ours, read-only: 440 with the program's group, else 400) and
    scratch/ (the program's, 700): the only place the program may write."""
    box = os.path.realpath(tempfile.mkdtemp(prefix="ilr-sandbox-"))
    path, scratch = os.path.join(box, "program.py"), os.path.join(box, "scratch")
    with open(path, "w", encoding="utf-8", errors="replace") as f:
        f.write(program)
    os.mkdir(scratch, 0o700)
    if with_root:
        os.mkdir(os.path.join(box, "root"), 0o755)     # mount point of the private root file system
    if uid is not None:
        os.chown(path, os.geteuid(), uid)
        os.chmod(path, 0o440)
        os.chown(scratch, uid, uid)
    else:
        os.chmod(path, 0o400)
    os.chmod(box, 0o711)
    return box


def run_code(program: str, tests: str | None = None, timeout: float = DEFAULT_TIMEOUT,
             memory_mb: int = DEFAULT_MEMORY_MB, max_output: int = DEFAULT_MAX_OUTPUT,
             contain: str | None = None) -> SandboxResult:
    """Run `program` (Python source) in a fresh sandbox and classify the outcome; with `tests` (asserts), run them
    afterwards against clean builtins and plain data (sandbox_child.py, step 5). Never raises for anything the
    program does; see the module docstring for the layers. `contain` overrides `isolation()` (for tests).

    >>> run_code("assert 1 + 1 == 2").reason, run_code("def f(): return 3", tests="assert f() == 4").reason
    ('passed', 'assertion')
    """
    check_limits(memory_mb, timeout)
    contain = contain or isolation()
    root = os.geteuid() == 0
    uid = WORKER_UID_BASE + next(_uids) % WORKER_UIDS if root and contain != "none" else None
    exe = _uid_interpreter() if contain == "uid" else _interpreter()
    start = time.monotonic()
    box = _make_box(program, uid, with_root=contain == "namespaces")
    nonce = secrets.token_hex(16)
    nonce_read, nonce_write = os.pipe()
    try:
        os.write(nonce_write, nonce.encode())
        os.close(nonce_write)
        nonce_write = None
        scratch = os.path.join(box, "scratch")
        env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as res:
            config = {"nonce_fd": nonce_read, "result_fd": res.fileno(), "box": box, "tests": tests,
                      "limits": _limits(timeout, memory_mb, max_output), "contain": contain,
                      "uid": uid if contain == "namespaces" else None, "gid": uid, "binds": _binds(exe)}
            argv = [exe, "-I", "-S", "-B", "-c", _child_source(), json.dumps(config)]
            if contain == "namespaces":                  # the child drops to `uid` itself, after mounting
                argv = [shutil.which("unshare") or "unshare", *([] if root else ["--user", "--map-root-user"]),
                        "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--", *argv]
            drop = dict(user=uid, group=uid, extra_groups=[]) if contain == "uid" else {}
            proc = subprocess.Popen(argv, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    pass_fds=(nonce_read, res.fileno()), start_new_session=True, **drop)
            os.close(nonce_read)
            nonce_read = None
            timed_out = _wait(proc, timeout)
            for kill in (os.killpg, os.kill):               # the whole group, then the child even if it left it
                try:
                    kill(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            returncode = proc.wait()
            stdout, stderr = _read(out, max_output), _read(err, max_output)
            output_full = max(os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size) >= max_output
            outcome = _outcome(_read(res, 1 << 16), nonce)
    finally:
        for fd in (nonce_read, nonce_write):
            if fd is not None:
                os.close(fd)
        _remove(box)
    stdout, stderr = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    reason, message = _classify(timed_out, returncode, outcome, output_full, stderr, timeout)
    return SandboxResult(passed=reason == "passed", reason=reason, message=message, stdout=stdout, stderr=stderr,
                         returncode=returncode, seconds=time.monotonic() - start)


def _remove(box: str) -> None:
    """Delete the box, even if the program made parts of it read-only."""
    def retry(function, path, _):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            function(path)
        except OSError:
            pass
    shutil.rmtree(box, onerror=retry)


def run_many(programs: list[str], workers: int | None = None, tests: list[str] | None = None,
             **kwargs) -> list[SandboxResult]:
    """`run_code` on each program (with its `tests`, if given), `workers` at a time (default: the number of CPU
    cores); input order kept."""
    workers = max(1, workers or os.cpu_count() or 1)
    tests = tests if tests is not None else [None] * len(programs)
    if workers == 1 or len(programs) <= 1:
        return [run_code(p, t, **kwargs) for p, t in zip(programs, tests)]
    isolation()                                          # probe once, before the threads start
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda pt: run_code(pt[0], pt[1], **kwargs), zip(programs, tests)))
