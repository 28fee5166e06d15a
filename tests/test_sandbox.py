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
    """As root without an unprivileged interpreter, RLIMIT_NPROC is not enforced: skip real fork bombs."""
    _, uid, _ = sandbox.sandbox_identity()
    return uid is None and os.geteuid() == 0


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


def test_the_program_runs_in_a_fresh_directory_that_is_removed_afterwards():
    result = run("import os\nprint(os.getcwd())\nprint(os.listdir('.'))\n")
    assert result.passed
    box = result.stdout.splitlines()[0]
    assert Path(box).name.startswith("ilr-sandbox-")
    assert eval(result.stdout.splitlines()[1]) == ["program.py"]
    assert not os.path.exists(box)


def test_writing_and_deleting_inside_the_box_is_allowed():
    result = run("""
        import os, tempfile
        with open("scratch.txt", "w") as f:
            f.write("x")
        os.rename("scratch.txt", "moved.txt")
        os.remove("moved.txt")
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"y")
        assert os.listdir(".") == ["program.py"]
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
