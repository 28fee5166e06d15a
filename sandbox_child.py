"""
sandbox_child.py — the first code the sandboxed interpreter runs; started by sandbox.run_code, never imported by the
project (it is passed to `python -I -S -B -c`, so it needs no path that the box can see).

Nothing here is from the paper (sandbox.py's header gives the whole picture). In order:
1. Read the nonce (the pass signal only this runner knows) from a pipe, close it.
2. Contain (the OS-level layers; sandbox.py decides which apply on this machine):
   "namespaces": we start as root of fresh user/mount/net/pid/ipc namespaces (or as real root in fresh
   mount/net/pid/ipc namespaces). Build a private root on a tmpfs holding only read-only bind mounts of the
   system's programs and libraries, the interpreter, this box (read-only) and a small writable tmpfs as its scratch, a
   fresh /proc and four /dev nodes; chroot into it; drop to the worker uid when we were real root; then drop
   every capability and set no_new_privs, so the program can neither mount, nor chroot out, nor regain rights.
   "uid": sandbox.py already started us under a worker uid of our own; nothing to do here.
3. Resource limits (setrlimit): CPU, address space, file size, processes, core files.
4. The Python-level guard: refuses process creation and writes outside the scratch folder, so that ordinary
   mistakes fail loudly. It can be undone by a determined program; the layers of 2 and 3 cannot.
5. Run the program; then, if sandbox.run_code was given tests, run each assert separately against a clean copy of
   the builtins and of the modules tests use, taken before the program ran, with every value a program function
   returns to the test converted to plain data first (`plain`): an object whose `__eq__` is always True, or a
   patched `math.isclose`, cannot make an assert pass.
6. Report one JSON line with the outcome on the result fd; "passed" carries the nonce.

argv after -c: one JSON object with nonce_fd, result_fd, limits, box, program, tests, contain, uid, gid, binds.
"""

import ast
import builtins
import io
import json
import os
import posix
import resource
import sys

# Modules MBPP's tests use by name (`math.isclose`, `re`, ...): copied before the program runs, so the tests see
# the real ones whatever the program did to sys.modules or to the module objects.
TEST_MODULES = ("math", "cmath", "re", "collections", "heapq", "itertools", "operator", "functools", "string")


# ----------------------------------------------------------------------------------------------------------
# 2) Containment at the OS level (only with contain == "namespaces")
# ----------------------------------------------------------------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
SCRATCH_MB = 16                                   # OURS: room for MBPP's few temporary files, not for a disk bomb
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
# statvfs flags -> mount flags: a read-only remount inside a user namespace must keep the flags the original
# mount has (the kernel locks them), as bubblewrap does.
KEEP_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
              (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))


def _libc():
    import ctypes
    return ctypes, ctypes.CDLL(None, use_errno=True)


def _mount(source, target, fstype, flags, data=None):
    ctypes, libc = _libc()
    encode = (lambda s: None if s is None else os.fsencode(s))
    if libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _bind(source, root, writable=False):
    """Bind `source` at the same path under `root`, read-only unless `writable`."""
    target = root + source
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    kept = sum(ms for st, ms in KEEP_FLAGS if os.statvfs(source).f_flag & st)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | kept | (0 if writable else MS_RDONLY))


def build_root(box: str, binds: list, owner: int) -> str:
    """The private file system: a tmpfs with read-only binds of `binds` (system folders, the interpreter), the box
    read-only, a fresh writable tmpfs of SCRATCH_MB owned by `owner` as its scratch folder, /dev/{null,zero,random,
    urandom} and a fresh /proc. Returns its path."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)          # nothing we mount leaks back to the host
    root = os.path.join(box, "root")
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path in binds:
        if os.path.islink(path):                          # /bin -> usr/bin on merged-/usr systems
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(os.readlink(path), root + path)
        elif os.path.exists(path):
            _bind(path, root)
    for device in ("null", "zero", "random", "urandom"):
        _bind(f"/dev/{device}", root, writable=True)
    _bind(box, root)                                      # program.py read-only (non-recursive: not root/ itself)
    scratch = root + os.path.join(box, "scratch")             # a small tmpfs: the disk cannot be filled
    _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, f"size={SCRATCH_MB}m,mode=0700,uid={owner},gid={owner}")
    os.makedirs(root + "/proc")
    try:                                                  # only our own pid namespace: pid 1 is this process
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:                                       # e.g. inside a container that masks /proc: go without
        pass
    _mount(None, root, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY, "size=1m,mode=0755")
    return root


def drop_privileges(uid, gid) -> None:
    """Give up every right: the capability bounding set, then (real root only) our uid, then all capabilities;
    no_new_privs so that no exec can bring them back."""
    ctypes, libc = _libc()
    for cap in range(64):                                  # EINVAL past the kernel's last capability: ignored
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if uid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)                        # from real root: this clears every capability
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)          # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()                         # effective, permitted, inheritable x 2: all zero
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def contain(config: dict) -> None:
    owner = config["uid"] if config["uid"] is not None else 0     # 0: ourselves inside a user namespace
    root = build_root(config["box"], config["binds"], owner)
    os.chdir(root)
    os.chroot(".")
    os.chdir(os.path.join(config["box"], "scratch"))
    drop_privileges(config["uid"], config["gid"])


# ----------------------------------------------------------------------------------------------------------
# 4) The Python-level guard (in the spirit of OpenAI human-eval's `reliability_guard`, written anew)
# ----------------------------------------------------------------------------------------------------------

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


def guard(box):
    """Refuse process creation, links, permission changes and writes / deletes / chdir outside `box` (here the
    scratch folder). Python-level: the real functions stay reachable (e.g. through these wrappers' closures)."""
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
    for name, arity in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("mkdir", 1), ("rename", 2), ("replace", 2)):
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
    import _posixsubprocess
    import shutil
    import subprocess
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, _refuse(f"shutil.{name}"))
    for name in ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, _refuse(f"subprocess.{name}"))
    _posixsubprocess.fork_exec = _refuse("_posixsubprocess.fork_exec")
    resource.setrlimit = _refuse("resource.setrlimit")
    for name in ("ctypes", "_ctypes"):
        sys.modules[name] = None


# ----------------------------------------------------------------------------------------------------------
# 5) The tests: clean builtins and modules, plain data only. Everything the tests use is captured here, BEFORE
#    the program runs: afterwards any builtin or module function may have been replaced by the program.
# ----------------------------------------------------------------------------------------------------------

def make_plain():
    """`plain(value)`: a copy of `value` built only of bool, int, float, complex, str, bytes, None, list, tuple,
    dict, set and frozenset (Counter / OrderedDict / defaultdict become a dict); TypeError for anything else.
    Equality between such values is the interpreter's own: no program can change it (these types are immutable).
    Types are compared with `is`: `==` on a class can be redefined by its metaclass.

    >>> plain = make_plain()
    >>> plain([1, (2.5, "a"), {3: None}])
    [1, (2.5, 'a'), {3: None}]
    >>> class Always:
    ...     def __eq__(self, other): return True
    >>> plain(Always())
    Traceback (most recent call last):
    TypeError: the tests compare plain data, and the program returned a Always
    """
    import collections
    scalars = (bool, int, float, complex, str, bytes, type(None))
    sequences = (list, tuple, set, frozenset)
    as_dict = (dict, collections.Counter, collections.OrderedDict, collections.defaultdict)
    type_, any_, dict_items, error = type, any, dict.items, TypeError

    def plain(value):
        kind = type_(value)
        if any_(kind is t for t in scalars):
            return value
        if any_(kind is t for t in sequences):
            return kind(plain(item) for item in kind.__iter__(value))
        if any_(kind is t for t in as_dict):
            return {plain(key): plain(item) for key, item in dict_items(value)}
        raise error(f"the tests compare plain data, and the program returned a {kind.__name__!s}")
    return plain


class PlainCalls(ast.NodeTransformer):
    """Route the result of every call by name in a test through `__plain__(result, name)`, which converts it to
    plain data unless `name` is a builtin or a test module the program did not redefine (decided when the test
    runs); `import math` of a test module is dropped (the test namespace holds a clean copy already).

    >>> ast.unparse(PlainCalls().visit(ast.parse("assert set(f(1)) == math.floor(2)")))
    "assert __plain__(set(__plain__(f(1), 'f')), 'set') == math.floor(2)"
    """

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name):
            return ast.Call(ast.Name("__plain__", ast.Load()), [node, ast.Constant(node.func.id)], [])
        return node

    def visit_Import(self, node):
        if all(alias.name in TEST_MODULES and alias.asname is None for alias in node.names):
            return ast.Pass()
        return node


def prepare_tests(tests: str):
    """Compile each assert of `tests` and capture clean copies of the builtins and of TEST_MODULES. Returns
    `run(namespace)`, which runs each assert on its own against a fresh test namespace: the program's names (less
    any that shadow a test module or start with "__"), private copies of the builtins and of the test modules,
    and `__plain__`. The program's functions keep their own globals, untouched."""
    import types
    clean_builtins = dict(vars(builtins))
    modules = {name: dict(vars(__import__(name))) for name in TEST_MODULES}
    codes = [compile(ast.fix_missing_locations(ast.Module([PlainCalls().visit(statement)], [])), "tests", "exec")
             for statement in ast.parse(tests, "tests").body]
    plain, module_type, update, exec_, str_, type_ = make_plain(), types.ModuleType, dict.update, exec, str, type
    items, copy, startswith = dict.items, dict.copy, str.startswith
    trusted, difference, contains = frozenset(clean_builtins), frozenset.difference, frozenset.__contains__

    def run(namespace: dict) -> None:
        own = [key for key, _ in items(namespace) if type_(key) is str_]
        trusted_now = difference(trusted, own)            # builtins the program did not redefine

        def check(value, name):
            return value if contains(trusted_now, name) else plain(value)

        for code in codes:
            names = {key: value for key, value in items(namespace) if type_(key) is str_
                     and not startswith(key, "__") and key not in modules}
            for name, contents in items(modules):
                names[name] = module_type(name)
                update(names[name].__dict__, contents)
            names["__builtins__"] = copy(clean_builtins)
            names["__plain__"] = check
            exec_(code, names)
    return run


# ----------------------------------------------------------------------------------------------------------
# Reporting and the main sequence
# ----------------------------------------------------------------------------------------------------------

def where(error, filename, source_lines):
    """'line N: <source>' of the deepest frame of `error` in `filename`, or ''."""
    tb, line = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None or not 0 < line <= len(source_lines):
        return ""
    return f"line {line}: {source_lines[line - 1].strip()[:200]}"


def main():
    config = json.loads(sys.argv[1])
    nonce = os.read(config["nonce_fd"], 64).decode()
    os.close(config["nonce_fd"])
    result_fd, write, exit_, dumps = config["result_fd"], os.write, os._exit, json.dumps

    def report(reason, message=""):
        try:
            write(result_fd, ("\n" + dumps({"reason": reason, "message": message[:1000]}) + "\n").encode())
        except BaseException:
            pass

    if config["contain"] == "namespaces":
        contain(config)
        _libc()[1].prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)    # SIGKILL when `unshare` dies (dropping rights cleared it)
    for name, value in config["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    path, tests = os.path.join(config["box"], "program.py"), config["tests"]
    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    try:
        code = compile(source, "program.py", "exec")
    except (SyntaxError, ValueError) as e:           # ValueError: null bytes in the source
        report("syntax", f"{type(e).__name__}: {e}")
        exit_(0)
    try:
        run_tests = prepare_tests(tests) if tests is not None else None
    except (SyntaxError, ValueError) as e:
        report("error", f"the tests do not compile: {type(e).__name__}: {e}")
        exit_(0)
    guard(os.path.join(config["box"], "scratch"))
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    lines, test_lines, filename = source.splitlines(), (tests or "").splitlines(), "program.py"
    try:
        exec(code, namespace)
        if tests is not None:
            filename, lines = "tests", test_lines
            run_tests(namespace)
    except AssertionError as e:
        report("assertion", f"AssertionError {where(e, filename, lines)} {str(e)[:200]}".strip())
    except MemoryError as e:
        namespace.clear()
        report("memory", f"MemoryError {where(e, filename, lines)}".strip())
    except BaseException as e:                       # also SystemExit and KeyboardInterrupt: exit before the end
        try:
            text = f"{type(e).__name__}: {str(e)[:300]} {where(e, filename, lines)}".strip()
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


if __name__ == "__main__":
    main()
