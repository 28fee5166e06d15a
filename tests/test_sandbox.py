"""Tests for sandbox.py: every attack is contained AND recorded with the right reason.

Each test runs one or a few tiny programs (~0.1 s each; the timeout tests 1 s).
"""

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sandbox  # noqa: E402
from sandbox import run_code, run_many  # noqa: E402

TESTS_THAT_MUST_NOT_RUN = "\nassert False, 'the tests must never be reached'\n"


def run(source: str, then: str = "", **kwargs):
    """run_code on the dedented `source` followed by `then` (e.g. the asserts that must not be reached)."""
    return run_code(textwrap.dedent(source) + then, **kwargs)


def no_nproc_protection() -> bool:
    """As root without a uid of its own for the program, RLIMIT_NPROC is not enforced: skip real fork bombs."""
    return os.geteuid() == 0 and sandbox.isolation() == "none"


# ---------------------------------------------------------------------------------------------- normal runs

def test_a_passing_program_passes_and_its_output_is_captured():
    result = run("""
        def add(a, b):
            return a + b
        print("hello")
        assert add(2, 3) == 5
    """)
    assert (result.passed, result.reason) == (True, "passed")
    assert result.stdout == "hello\n"


def test_a_failing_assert_is_recorded_as_assertion_with_the_line():
    result = run("def f(x):\n    return x\nassert f(1) == 1\nassert f(2) == 3\n")
    assert (result.passed, result.reason) == (False, "assertion")
    assert "line 4" in result.message and "f(2) == 3" in result.message


def test_a_syntax_error_is_recorded_as_syntax():
    result = run("def f(:\n    return 1\n")
    assert (result.passed, result.reason) == (False, "syntax")


def test_null_bytes_in_the_source_are_a_syntax_error():
    assert run("x = 1\x00\n").reason == "syntax"


def test_a_runtime_exception_is_recorded_as_error():
    result = run("def f():\n    return 1 / 0\nassert f() == 1\n")
    assert (result.passed, result.reason) == (False, "error")
    assert "ZeroDivisionError" in result.message


def test_stdin_is_closed():
    result = run("x = input()\nassert x == ''\n")
    assert result.reason == "error" and "EOFError" in result.message


def test_the_environment_is_scrubbed():
    result = run("import os\nprint(sorted(os.environ))\n")
    assert result.passed
    names = set(eval(result.stdout))
    assert names <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE"}


def test_the_program_runs_in_a_fresh_empty_scratch_directory_that_is_removed_afterwards():
    result = run("import os\nprint(os.getcwd())\nprint(os.listdir('.'))\n")
    assert result.passed
    scratch = Path(result.stdout.splitlines()[0])
    assert scratch.name == "scratch" and scratch.parent.name.startswith("ilr-sandbox-")
    assert eval(result.stdout.splitlines()[1]) == []
    assert not scratch.parent.exists()


def test_writing_and_deleting_inside_the_box_is_allowed():
    result = run("""
        import os, tempfile
        with open("scratch.txt", "w") as f:
            f.write("x")
        os.rename("scratch.txt", "moved.txt")
        os.remove("moved.txt")
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"y")
        assert os.listdir(".") == []
    """)
    assert result.passed, result.message


def test_name_is_not_main_so_demo_blocks_do_not_run():
    result = run("if __name__ == '__main__':\n    input()\nassert True\n")
    assert result.passed


# ---------------------------------------------------------------------------------- exiting before the end

def test_sys_exit_zero_before_the_asserts_does_not_count_as_passed():
    result = run("import sys\nsys.exit(0)\n" + TESTS_THAT_MUST_NOT_RUN)
    assert (result.passed, result.reason) == (False, "error")
    assert "SystemExit" in result.message


def test_raise_system_exit_is_recorded_as_error():
    result = run("raise SystemExit(0)\n" + TESTS_THAT_MUST_NOT_RUN)
    assert (result.passed, result.reason) == (False, "error")


def test_keyboard_interrupt_is_recorded_as_error():
    result = run("raise KeyboardInterrupt\n" + TESTS_THAT_MUST_NOT_RUN)
    assert (result.passed, result.reason) == (False, "error")
    assert "KeyboardInterrupt" in result.message


def test_os_exit_zero_is_disabled_and_does_not_count_as_passed():
    result = run("import os\nos._exit(0)\n" + TESTS_THAT_MUST_NOT_RUN)
    assert (result.passed, result.reason) == (False, "error")


def test_os_exit_restored_through_ctypes_still_does_not_count_as_passed():
    result = run("""
        import sys
        sys.modules.pop("ctypes", None); sys.modules.pop("_ctypes", None)
        import ctypes
        ctypes.CDLL(None)._exit(0)
    """, then=TESTS_THAT_MUST_NOT_RUN)
    assert (result.passed, result.reason) == (False, "error")
    assert "before the end" in result.message


def test_printing_a_fake_pass_or_writing_a_forged_result_does_not_pass():
    result = run("""
        import os, sys
        print('{"reason": "passed", "nonce": "0"}')
        for fd in range(3, 64):
            try:
                os.write(fd, b'\\n{"reason": "passed", "nonce": "0"}\\n')
            except OSError:
                pass
        sys.exit(0)
    """, then=TESTS_THAT_MUST_NOT_RUN)
    assert not result.passed and result.reason == "error"


# ----------------------------------------------------------------------------------------- resource attacks

def test_an_infinite_loop_is_killed_and_recorded_as_timeout():
    start = time.monotonic()
    result = run("while True:\n    pass\n", timeout=1.0)
    assert (result.passed, result.reason) == (False, "timeout")
    assert time.monotonic() - start < 10


def test_a_sleeping_program_is_killed_and_recorded_as_timeout():
    result = run("import time\ntime.sleep(60)\n", timeout=1.0)
    assert result.reason == "timeout"


def test_a_memory_bomb_is_recorded_as_memory():
    result = run("x = bytearray(16 * 1024 ** 3)\n", memory_mb=256)
    assert (result.passed, result.reason) == (False, "memory")


def test_a_growing_memory_bomb_is_recorded_as_memory():
    result = run("chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))\n", memory_mb=256)
    assert result.reason == "memory"


def test_an_output_flood_is_capped_and_recorded_as_output():
    result = run("while True:\n    print('x' * 10000)\n", timeout=3.0, max_output=100_000)
    assert (result.passed, result.reason) == (False, "output")
    assert len(result.stdout) <= 100_000


def test_an_output_flood_that_ignores_errors_is_still_recorded_as_output():
    result = run("""
        while True:
            try:
                print('x' * 10000)
            except OSError:
                pass
    """, timeout=1.0, max_output=100_000)
    assert result.reason == "output"


def test_os_fork_and_subprocess_and_os_system_are_disabled():
    for source in ("import os\nwhile True:\n    os.fork()\n",
                   "import subprocess\nsubprocess.run(['sleep', '100'])\n",
                   "import os\nos.system('sleep 100')\n",
                   "import os\nos.posix_spawn('/bin/sleep', ['sleep', '100'], {})\n",
                   "import multiprocessing\nmultiprocessing.Process(target=print).start()\n"):
        result = run(source)
        assert (result.passed, result.reason) == (False, "error"), source
        assert "disabled" in result.message or "PermissionError" in result.message, (source, result.message)


@pytest.mark.skipif(no_nproc_protection(), reason="root without an unprivileged interpreter: NPROC not enforced")
def test_a_fork_bomb_with_fork_restored_through_ctypes_is_stopped_by_rlimit_nproc():
    result = run("""
        import sys
        sys.modules.pop("ctypes", None); sys.modules.pop("_ctypes", None)
        import ctypes
        libc = ctypes.CDLL(None)
        for _ in range(50):
            pid = libc.fork()
            if pid == 0:
                libc.pause()
        assert pid != -1, "fork refused"
    """, timeout=3.0)
    assert (result.passed, result.reason) == (False, "assertion")
    assert "fork refused" in result.message


def test_threads_cannot_be_started():
    result = run("import threading\nthreading.Thread(target=print).start()\n")
    assert result.reason == "error"


# ------------------------------------------------------------------------------------- file-system attacks

def test_writing_a_file_outside_the_box_is_refused(tmp_path):
    for target in (tmp_path / "pwned.txt", Path("/tmp") / f"ilr-sandbox-pwned-{os.getpid()}.txt"):
        for source in (f"open({str(target)!r}, 'w').write('x')\n",
                       f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')\n",
                       f"import os\nos.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)\n"):
            result = run(source)
            assert (result.passed, result.reason) == (False, "error"), source
            assert not target.exists(), source


def test_deleting_a_file_outside_the_box_is_refused(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("precious")
    for source in (f"import os\nos.remove({str(keep)!r})\n",
                   f"import os\nos.unlink({str(keep)!r})\n",
                   f"import os\nos.rename({str(keep)!r}, 'stolen.txt')\n",
                   f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n"):
        result = run(source)
        assert (result.passed, result.reason) == (False, "error"), source
        assert keep.read_text() == "precious", source


def test_chdir_outside_the_box_is_refused():
    result = run("import os\nos.chdir('/')\n" + TESTS_THAT_MUST_NOT_RUN)
    assert (result.passed, result.reason) == (False, "error")
    assert "chdir" in result.message


def test_chdir_inside_the_box_is_allowed():
    result = run("import os\nos.mkdir('sub')\nos.chdir('sub')\nassert os.getcwd().endswith('sub')\n")
    assert result.passed, result.message


# ------------------------------------------------------------------------------------------------ parallel

def test_run_many_keeps_the_input_order_and_isolates_programs():
    programs = ["assert True", "assert False", "while True: pass", "x = (", "print(2)"]
    results = run_many(programs, workers=2, timeout=1.0)
    assert [r.reason for r in results] == ["passed", "assertion", "timeout", "syntax", "passed"]
    assert results[4].stdout == "2\n"


# ------------------------------------------------------------------------- attacks between boxes and on the host
# Issue 14: each of these got through the Python-level guard before the OS-level layers existed. The programs use
# the guard's own escape hatches (the real functions kept in its wrappers' closures, `_io.FileIO`, `os.mkdir`,
# ctypes re-imported), so what stops them must be the operating system, not the guard.

REAL = """
import os, sys, _io
def real(name):
    # the guard's wrapper keeps the real function in its closure: hand it back
    cells = getattr(getattr(os, name), "__closure__", None) or ()
    found = [c.cell_contents for c in cells if getattr(c.cell_contents, "__name__", "") == name]
    return found[0] if found else getattr(os, name)
"""


def isolated() -> bool:
    return sandbox.isolation() == "namespaces"


needs_namespaces = pytest.mark.skipif("not isolated()", reason="no user/mount/net namespaces on this machine")


def os_layers():
    """The OS-level layers this machine can test: namespaces if available, a uid per program if we are root."""
    return [c for c, ok in (("namespaces", sandbox.isolation() == "namespaces"), ("uid", os.geteuid() == 0)) if ok]


@pytest.mark.parametrize("contain", os_layers())
def test_one_program_cannot_make_the_others_pass_by_rewriting_their_files(contain):
    attacker = REAL + """
import glob, time
unlink, here, done = real("unlink"), os.path.realpath("."), set()
end = time.monotonic() + 2.5
while time.monotonic() < end:
    for path in glob.glob("/tmp/ilr-sandbox-*/program.py") + glob.glob("/tmp/ilr-sandbox-*/*/program.py"):
        if path in done or here.startswith(os.path.dirname(path)):    # not our own box
            continue
        try:
            unlink(path)
            f = _io.FileIO(path, "w"); f.write(b"pass\\n"); f.close()
            done.add(path)
        except OSError:
            pass
"""
    wrong = ["import time\ntime.sleep(0.05)\nassert 1 + 1 == 3\n"] * 12
    results = run_many([attacker] + wrong, workers=2, timeout=4.0, contain=contain)
    assert [r.reason for r in results[1:]] == ["assertion"] * 12


@pytest.mark.skipif(os.geteuid() != 0, reason="a uid per program only when we are root")
def test_as_root_each_program_runs_under_a_uid_of_its_own():
    results = run_many(["import os\nprint(os.getuid(), os.getgid(), os.getgroups())"] * 4, workers=2)
    ids = [r.stdout.split()[0] for r in results]
    assert all(r.passed for r in results) and len(set(ids)) == 4 and "0" not in ids


@pytest.fixture
def open_dir():
    """A folder under /tmp that anyone may enter and write: file permissions alone would not protect it."""
    import shutil
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="ilr-test-open-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_namespaces
def test_fileio_mkdir_and_ctypes_cannot_write_outside_the_box(open_dir):
    tmp_path = open_dir
    attacks = {"fileio": REAL + f"_io.FileIO({str(tmp_path / 'fileio')!r}, 'w').write(b'x')\n",
               "mkdir": REAL + f"os.mkdir({str(tmp_path / 'mkdir')!r})\n",
               "ctypes": f"""
import sys
sys.modules.pop("ctypes", None); sys.modules.pop("_ctypes", None)
import ctypes
ctypes.CDLL(None).creat({str(tmp_path / 'ctypes').encode()!r}, 0o644)
"""}
    for name, source in attacks.items():
        run(source)
        assert not (tmp_path / name).exists(), name


@needs_namespaces
def test_the_guards_own_wrappers_cannot_delete_outside_the_box(open_dir):
    tmp_path = open_dir
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o666)
    run(REAL + f"real('unlink')({str(victim)!r})\n")
    run(REAL + f"real('rename')({str(victim)!r}, 'stolen.txt')\n")
    assert victim.read_text() == "precious"


@needs_namespaces
def test_the_benchmark_files_with_the_gold_solutions_are_not_readable():
    from conftest import SHARED_DATA
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no benchmark folder at {SHARED_DATA}")
    result = run(REAL + f"""
for root, _, files in os.walk({str(SHARED_DATA)!r}):
    for name in files:
        try:
            print("READ", len(open(os.path.join(root, name), "rb").read(100)))
        except OSError:
            pass
""")
    assert result.passed and "READ" not in result.stdout


@needs_namespaces
def test_no_network_not_even_a_loopback_connection():
    import socket
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        result = run(f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2).sendall(b"hello")
    print("CONNECTED")
except OSError as e:
    print(type(e).__name__)
""")
        try:
            connection, _ = server.accept()
            connection.close()
            accepted = True
        except socket.timeout:
            accepted = False
    assert result.passed and "CONNECTED" not in result.stdout and not accepted


def ordinary_user_python():
    """(system interpreter, uid) to run a sandbox parent as an ordinary user, or skip."""
    import shutil
    exe = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(exe):
        pytest.skip("needs root, setpriv and a system python to play an ordinary user")
    return exe, 65534


def test_as_an_ordinary_user_the_parents_environment_and_the_users_files_are_out_of_reach(tmp_path):
    """The parent runs as an ordinary (non-root) user, as most users do: the program then runs under the same
    account unless namespaces hide the rest of the machine. Before they existed, it read the parent's environment
    through /proc and read and deleted the user's own files."""
    import subprocess
    exe, uid = ordinary_user_python()
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("private")
    (home / "notes.txt").chmod(0o600)
    for path in (tmp_path, home, home / "notes.txt"):
        os.chown(path, uid, uid)
    tmp_path.chmod(0o755)
    program = REAL + f"""
import glob
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        if b"ILR_TEST_SECRET" in open(path, "rb").read():
            print("SECRET", path)
    except OSError:
        pass
try:
    print("NOTES", open({str(home / 'notes.txt')!r}).read())
except OSError:
    pass
try:
    real("unlink")({str(home / 'notes.txt')!r})
except OSError:
    pass
"""
    # the parent imports sandbox from a copy the ordinary user can read (a clone may sit in a 0700 folder)
    import shutil
    import tempfile
    code = Path(tempfile.mkdtemp())
    code.chmod(0o755)
    for name in ("sandbox.py", "sandbox_child.py"):
        shutil.copy(Path(sandbox.__file__).with_name(name), code / name)
        (code / name).chmod(0o644)
    parent = (f"import sys, json; sys.path.insert(0, {str(code)!r}); import sandbox; "
              f"r = sandbox.run_code({program!r}); print(json.dumps([r.reason, r.stdout, r.message]))")
    out = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", exe, "-I", "-c", parent],
                         env={"ILR_TEST_SECRET": "s3cret", "HOME": str(home), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    shutil.rmtree(code)
    import json
    assert out.stdout.strip(), out.stderr
    reason, stdout, message = json.loads(out.stdout.splitlines()[-1])
    assert reason == "passed", (message, out.stderr)
    assert "SECRET" not in stdout and "NOTES" not in stdout
    assert (home / "notes.txt").read_text() == "private"


@pytest.mark.skipif("sandbox.isolation() == 'none'", reason="programs run as our own user: nothing but the guard")
def test_the_program_file_is_read_only_even_to_the_program_itself():
    result = run(REAL + """
import glob
me = glob.glob(os.path.join(os.path.dirname(os.getcwd()), "program.py")) + glob.glob("program.py")
for path in me:
    for attempt in (lambda: real("unlink")(path), lambda: _io.FileIO(path, "w")):
        try:
            attempt()
            print("CHANGED", path)
        except OSError:
            pass
""")
    assert result.passed and "CHANGED" not in result.stdout, result.stdout


# ------------------------------------------------------------------------------------------------- reward hacks
# Known from RL on code: make the asserts true instead of the answer. Each program below passes when the asserts
# are simply appended to it (checked first, so the test shows the hack is real), and fails when they are given
# as `tests`, which the sandbox runs afterwards against clean builtins, comparing plain data only.

HACKS = {
    "eq always true": ("class Yes:\n    def __eq__(self, other): return True\ndef f(x): return Yes()\n",
                       "assert f(1) == 3\nassert f(2) == [4, 5]\n"),
    "int subclass": ("class I(int):\n    def __eq__(self, other): return True\n    __hash__ = int.__hash__\n"
                     "def f(x): return I(0)\n", "assert f(1) == 3\n"),
    "eq in a list": ("class Yes:\n    def __eq__(self, other): return True\ndef f(x): return [Yes(), Yes()]\n",
                     "assert f(1) == [4, 5]\n"),
    "metaclass eq": ("class Meta(type):\n    def __eq__(cls, other): return True\n    __hash__ = type.__hash__\n"
                     "class Yes(metaclass=Meta):\n    def __eq__(self, other): return True\n"
                     "def f(x): return Yes()\n", "assert f(1) == 3\n"),
    "math.isclose patched": ("import math\nmath.isclose = lambda *a, **k: True\ndef f(x): return 0.0\n",
                             "assert math.isclose(f(1), 2.5, rel_tol=0.001)\n"),
    "isclose patched in a call": ("import math\ndef f(x):\n    math.isclose = lambda *a, **k: True\n    return 0.0\n",
                                  "assert math.isclose(f(1), 0.0)\nassert math.isclose(f(2), 2.5)\n"),
    "builtins patched": ("import builtins\nbuiltins.sorted = lambda x: [1, 2, 3]\ndef f(x): return [3, 0]\n",
                         "assert sorted(f(1)) == [1, 2, 3]\n"),
    "sys.modules swapped": ("import sys, types\nfake = types.ModuleType('math')\nfake.isclose = lambda *a, **k: True\n"
                            "sys.modules['math'] = fake\nimport math\ndef f(x): return 0.0\n",
                            "import math\nassert math.isclose(f(1), 2.5)\n"),
}


@pytest.mark.parametrize("name", sorted(HACKS))
def test_reward_hacks_do_not_pass(name):
    program, tests = HACKS[name]
    assert run_code(program + tests).passed, "the hack should work when the asserts are part of the program"
    result = run_code(program, tests)
    assert not result.passed and result.reason in ("assertion", "error"), result


def test_honest_answers_still_pass_with_separate_tests():
    program = ("import collections, math\ndef f(x): return collections.Counter('aab')\n"
               "def g(x): return {(1, 2.0): [None, b'x', frozenset({1})]}\ndef sum(a, b): return a + b\n")
    tests = ("assert f(0) == {'a': 2, 'b': 1}\nassert g(0) == {(1, 2): [None, b'x', frozenset({1})]}\n"
             "assert sum(2, 3) == 5\nassert math.isclose(sum(0.1, 0.2), 0.3)\nassert set(g(0)) == {(1, 2.0)}\n")
    result = run_code(program, tests)
    assert result.passed, result


def test_a_failing_test_is_reported_with_its_line():
    result = run_code("def f(x): return x", "assert f(1) == 1\nassert f(2) == 3\n")
    assert result.reason == "assertion" and "line 2: assert f(2) == 3" in result.message


def test_grade_code_runs_the_asserts_as_separate_tests():
    import evaluate
    record = {"kind": "code", "meta": {"tests": ["assert f(1) == 3"], "setup_code": "", "entry_point": "f"}}
    hack = "```python\nclass Yes:\n    def __eq__(self, other): return True\ndef f(x): return Yes()\n```"
    assert evaluate.grade_code(hack, record).correct is False
    assert evaluate.grade_code("```python\ndef f(x): return x + 2\n```", record).correct is True


# ------------------------------------------------------------------------------------------------------ limits

@pytest.mark.parametrize("memory_mb, timeout, setting", [(8, 5.0, "--memory-mb 8"), (1024, 0, "--timeout 0"),
                                                         (1024, -1, "--timeout -1"),
                                                         (1024, float("nan"), "--timeout nan")])
def test_limits_too_small_for_the_gold_programs_are_refused_in_one_line(memory_mb, timeout, setting):
    with pytest.raises(ValueError) as error:
        sandbox.check_limits(memory_mb, timeout)
    message = str(error.value)
    assert message.startswith(setting + ":") and "at least" in message and "\n" not in message
    with pytest.raises(ValueError):
        run_code("assert True", memory_mb=memory_mb, timeout=timeout)


def test_the_floor_limits_run_a_program_using_the_modules_mbpp_needs():
    program = ("import re, math, heapq, collections, itertools, cmath, array, operator, sys, copy\n"
               "def f(s): return sorted(collections.Counter(re.findall('[a-z]', s)).items())\n")
    result = run_code(program, "assert f('abca') == [('a', 2), ('b', 1), ('c', 1)]\n",
                      memory_mb=sandbox.MIN_MEMORY_MB, timeout=sandbox.MIN_TIMEOUT)
    assert result.passed, result


def test_grading_with_limits_too_small_raises_instead_of_scoring_zero():
    import evaluate
    record = {"kind": "code", "meta": {"tests": ["assert f(1) == 3"], "setup_code": "", "entry_point": "f"}}
    for limits in ({"memory_mb": 8}, {"timeout": 0}):
        with pytest.raises(ValueError, match="at least"):
            evaluate.grade_many(["```python\ndef f(x): return 3\n```"], [record], **limits)


def test_the_child_programs_docstring_examples():
    """sandbox_child.py is not in pytest's doctest paths (it is a script); its examples are checked here."""
    import doctest

    import sandbox_child
    failures, attempted = doctest.testmod(sandbox_child)
    assert attempted >= 3 and failures == 0


@needs_namespaces
def test_a_disk_bomb_stops_at_the_scratch_size():
    result = run("""
        written = 0
        try:
            for i in range(200):
                with open(f"f{i}", "wb") as f:
                    f.write(b"x" * 500_000)
                written += 1
        except OSError as e:
            print(written, type(e).__name__)
    """, timeout=5.0)
    count, error = result.stdout.split()
    assert result.passed and int(count) < 40 and error == "OSError"
