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

import json
import os
import pwd
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

REASONS = ("passed", "assertion", "timeout", "memory", "syntax", "error", "output")
DEFAULT_TIMEOUT = 5.0         # seconds of wall time per program (issue 3)
DEFAULT_MEMORY_MB = 1024      # address space; the interpreter alone maps ~30 MB
DEFAULT_MAX_OUTPUT = 1 << 20  # bytes: cap on stdout, on stderr and on any file the program writes
UNPRIVILEGED_USER = "nobody"  # who runs candidate code when we are root

# ----------------------------------------------------------------------------------------------------------
# The runner: the first code the child interpreter executes. It reads the nonce, sets the limits, installs the
# guard, executes the candidate program, and writes one JSON line with the outcome to the result file.
# argv: nonce_fd result_fd limits_json box program_path
# ----------------------------------------------------------------------------------------------------------
RUNNER = r'''
import builtins, io, json, os, posix, resource, sys

def _refuse(name):
    def refused(*args, **kwargs):
        raise PermissionError(f"{name} is disabled in the sandbox")
    return refused

def _inside(box, path):
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return real == box or real.startswith(box + os.sep)

def _guard(box):
    real_open, real_os_open, real_chdir = builtins.open, os.open, os.chdir
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def open_(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and any(c in mode for c in "wax+") and not _inside(box, file):
            raise PermissionError(f"writing outside the sandbox directory is disabled: {file!r}")
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & writes and (dir_fd is not None or not _inside(box, path)):
            raise PermissionError(f"writing outside the sandbox directory is disabled: {path!r}")
        return real_os_open(path, flags, mode)

    def chdir(path):
        if isinstance(path, int) or not _inside(box, path):
            raise PermissionError(f"os.chdir outside the sandbox directory is disabled: {path!r}")
        return real_chdir(path)

    def inside_only(name, real, arity=1):
        def call(*paths, **kwargs):
            if kwargs or len(paths) != arity or not all(_inside(box, p) for p in paths):
                raise PermissionError(f"os.{name} outside the sandbox directory is disabled: {paths!r}")
            return real(*paths)
        return call

    builtins.open = io.open = open_
    os.open = posix.open = os_open
    os.chdir = posix.chdir = chdir
    for name, arity in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("rename", 2), ("replace", 2)):
        setattr(os, name, inside_only(name, getattr(posix, name), arity))   # inside the box: allowed
        setattr(posix, name, getattr(os, name))
    for name in ("system", "popen", "fork", "forkpty", "vfork", "execv", "execve", "execl", "execle", "execlp",
                 "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve",
                 "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "kill", "killpg", "removedirs", "renames",
                 "link", "symlink", "truncate", "chmod",
                 "fchmod", "lchmod", "chown", "fchown", "lchown", "chroot", "fchdir", "setuid", "seteuid",
                 "setgid", "setegid", "setreuid", "setregid", "setresuid", "setresgid", "setsid", "setpgid",
                 "setpgrp", "putenv", "unsetenv", "_exit", "abort", "nice", "pidfd_open"):
        for module in (os, posix):
            if hasattr(module, name):
                setattr(module, name, _refuse(f"os.{name}"))
    import shutil, subprocess, _posixsubprocess
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, _refuse(f"shutil.{name}"))
    for name in ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, _refuse(f"subprocess.{name}"))
    _posixsubprocess.fork_exec = _refuse("_posixsubprocess.fork_exec")
    resource.setrlimit = _refuse("resource.setrlimit")
    for name in ("ctypes", "_ctypes"):
        sys.modules[name] = None

def _where(error, source_lines):
    tb, line = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "program.py":
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None or not 0 < line <= len(source_lines):
        return ""
    return f"line {line}: {source_lines[line - 1].strip()[:200]}"

def _main():
    nonce_fd, result_fd, limits, box, path = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), \
        sys.argv[4], sys.argv[5]
    nonce = os.read(nonce_fd, 64).decode()
    os.close(nonce_fd)
    write, exit_, dumps = os.write, os._exit, json.dumps

    def report(reason, message=""):
        try:
            write(result_fd, ("\n" + dumps({"reason": reason, "message": message[:1000]}) + "\n").encode())
        except BaseException:
            pass

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    try:
        code = compile(source, "program.py", "exec")
    except (SyntaxError, ValueError) as e:           # ValueError: null bytes in the source
        report("syntax", f"{type(e).__name__}: {e}")
        exit_(0)
    _guard(box)
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    lines = source.splitlines()
    try:
        exec(code, namespace)
    except AssertionError as e:
        report("assertion", f"AssertionError {_where(e, lines)} {str(e)[:200]}".strip())
    except MemoryError as e:
        namespace.clear()
        report("memory", f"MemoryError {_where(e, lines)}".strip())
    except BaseException as e:                       # also SystemExit and KeyboardInterrupt: exit before the end
        try:
            text = f"{type(e).__name__}: {str(e)[:300]} {_where(e, lines)}".strip()
        except BaseException:
            text = type(e).__name__
        report("error", text)
    else:
        try:
            write(result_fd, ("\n" + dumps({"reason": "passed", "nonce": nonce}) + "\n").encode())
        except BaseException:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    exit_(0)

_main()
'''


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

@lru_cache(maxsize=1)
def sandbox_identity() -> tuple[str, int | None, int | None]:
    """(interpreter, uid, gid) for candidate programs; uid/gid None = our own user (we are not root, or
    no interpreter is reachable by `nobody`: then the OS-level protections of layer 5 are missing)."""
    if os.geteuid() != 0:
        return sys.executable, None, None
    try:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return sys.executable, None, None
    # sys.executable may live under /root (mode 700), unreachable for `nobody`: try system interpreters too.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for exe in (sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}",
                "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            probe = subprocess.run([exe, "-I", "-B", "-c", "import resource, json, _posixsubprocess"], cwd="/",
                                   user=user.pw_uid, group=user.pw_gid, extra_groups=[], env={},
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return exe, user.pw_uid, user.pw_gid
    return sys.executable, None, None


def describe_sandbox() -> str:
    """One line for logs and summaries: which interpreter and which user run candidate code."""
    exe, uid, _ = sandbox_identity()
    who = f"uid {uid} ({UNPRIVILEGED_USER})" if uid is not None else f"uid {os.geteuid()} (our own user)"
    return f"{exe} as {who}"


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


def run_code(program: str, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
             max_output: int = DEFAULT_MAX_OUTPUT) -> SandboxResult:
    """Run `program` (Python source) in a fresh sandbox and classify the outcome. Never raises for anything the
    program does; see the module docstring for the layers.

    >>> run_code("assert 1 + 1 == 2").reason, run_code("assert 1 + 1 == 3").reason
    ('passed', 'assertion')
    """
    exe, uid, gid = sandbox_identity()
    start = time.monotonic()
    box = os.path.realpath(tempfile.mkdtemp(prefix="ilr-sandbox-"))
    nonce = secrets.token_hex(16)
    nonce_read, nonce_write = os.pipe()
    try:
        path = os.path.join(box, "program.py")
        with open(path, "w", encoding="utf-8", errors="replace") as f:
            f.write(program)
        if uid is not None:
            os.chown(box, uid, gid)
        os.write(nonce_write, nonce.encode())
        os.close(nonce_write)
        nonce_write = None
        env = {"PATH": "/usr/bin:/bin", "HOME": box, "TMPDIR": box, "LANG": "C.UTF-8"}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as res:
            argv = [exe, "-I", "-B", "-c", RUNNER, str(nonce_read), str(res.fileno()),
                    json.dumps(_limits(timeout, memory_mb, max_output)), box, path]
            drop = dict(user=uid, group=gid, extra_groups=[]) if uid is not None else {}
            proc = subprocess.Popen(argv, cwd=box, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    pass_fds=(nonce_read, res.fileno()), start_new_session=True, **drop)
            os.close(nonce_read)
            nonce_read = None
            timed_out = _wait(proc, timeout)
            try:
                os.killpg(proc.pid, signal.SIGKILL)        # the whole group, stray children included
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


def run_many(programs: list[str], workers: int | None = None, **kwargs) -> list[SandboxResult]:
    """`run_code` on each program, `workers` at a time (default: the number of CPU cores); input order kept."""
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(programs) <= 1:
        return [run_code(p, **kwargs) for p in programs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_code(p, **kwargs), programs))
