"""
sandbox.py — run model-written Python in a throw-away process and say whether it passed, and if not, why.

Where it sits in ILR (arXiv 2509.26306): the paper evaluates every trained model alone on MBPP (code, out of
domain). evaluate.py extracts the code block from a completion, appends the benchmark's setup code and asserts,
and hands the program to `run_code` here. Nothing in this file is from the paper: it is the safety harness that
lets us execute untrusted code on the machine that trains the models.

    from sandbox import run_code, run_many
    run_code("def f(x):\\n    return x + 1\\nassert f(1) == 2").reason        # 'passed'
    run_code("while True: pass", timeout=1.0).reason                      # 'timeout'
    run_many([prog_a, prog_b, ...], workers=2)                            # in parallel, results in input order

Tests: `pytest tests/test_sandbox.py` — one test per attack (infinite loop, sys.exit / os._exit before the
asserts, KeyboardInterrupt, memory bomb, fork bomb, output flood, writing / deleting outside the box, chdir).

How one program runs (each line is a layer; the later ones hold even if the earlier ones are bypassed):
1. Its own process: `python -I -B` (isolated mode: no PYTHON* variables, no user site, no .pyc writes), in its
   own session (process group) so the whole group can be killed; stdin is /dev/null; the environment is
   replaced by a minimal one (PATH, HOME = TMPDIR = the box, LANG).
2. Its own fresh temporary directory ("the box") as working directory, removed afterwards.
3. Resource limits set by our runner before the candidate code runs (`resource.setrlimit`): CPU seconds,
   address space, file size (which also caps stdout/stderr: they are files), processes = 0, core files = 0.
   OURS: set in the runner rather than in `preexec_fn`, because `preexec_fn` is documented as unsafe when the
   parent has threads, and we launch programs from a thread pool.
4. A guard, applied by the runner before the candidate code (in the spirit of OpenAI human-eval's
   `reliability_guard`, written anew): process creation (os.system/fork/exec*/spawn*/posix_spawn/kill,
   subprocess), chmod/chown/links, shutil.rmtree/move, os._exit and resource.setrlimit are replaced by
   functions that raise PermissionError; opening for writing, deleting, renaming and os.chdir are allowed only
   inside the box (so `tempfile` works there); `ctypes` cannot be imported. This is Python-level and a
   determined program can undo it; it exists so that ordinary mistakes fail loudly, and layers 3, 5, 6 hold.
5. When we run as root, the program runs as the unprivileged user `nobody` (Popen's user/group arguments):
   the OS then refuses writes to anything `nobody` does not own, and RLIMIT_NPROC is enforced (Linux does not
   enforce it for root). If no interpreter is reachable by `nobody`, we fall back to our own user and say so in
   `SANDBOX_USER`.
6. A wall-clock timeout in the parent kills the whole process group (SIGKILL), stray children included.

When does a program pass? Only when our runner reaches the end of the program (every assert) and writes a
random nonce that only the runner has, read from a pipe the parent closed, to a result file the candidate did
not open. A `sys.exit(0)` / `os._exit(0)` / `raise SystemExit` before the end therefore never counts, and
neither does printing "passed". (A program that deliberately walks the interpreter's frames could find the
nonce; that is out of scope: the protection is against accidental and naive reward hacks.)

Outcome reasons: passed | assertion | timeout | memory | syntax | error | output (stdout+stderr hit the cap).

Choices (ours):
1. Defaults: wall timeout 5 s (the issue's), CPU limit = wall timeout + 1 s, address space 1024 MB
   (python itself maps ~30 MB; MBPP needs far less), output and file size cap 1 MB.
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
    """
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
