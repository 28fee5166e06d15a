"""Faults an unlucky user meets (issue 25): each ends in one line naming the path or setting and what to do, exit
non-zero, nothing half-written, the previous checkpoint intact.

evaluate.py --resume with other settings than the rows there; a flipped byte in a checkpoint or final model file;
the run lock's start-up window; a full disk while checkpointing; a read-only or file-as-folder --output_dir;
Ctrl-C outside the training loop; a hand-edited config.json. All with the tiny random model, seconds each."""
import errno
import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import torch

import evaluate
import ilr
import llm

FAST = ["--preset", "tiny", "--no-eval_base", "--max_completion_length", "6", "--questions_per_step", "1",
        "--eval_limit", "1", "--eval_max_new_tokens", "2", "--interaction", "random"]


def one_line_error(capsys, e, *fragments):
    """The refusal was exit 2 with exactly one stderr line holding every fragment, and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if "%|" not in line]  # the progress bar (tqdm), if one was drawn
    assert len(lines) == 2 and lines[1] == "" and "Traceback" not in err, err
    assert e.value.code == 2 and lines[0].startswith(("ilr.py: error: ", "evaluate.py: error: ")), err
    assert all(f in lines[0] for f in fragments), err
    return lines[0]


def files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def flip_byte(path: Path) -> None:
    """Flip the top bit of the byte in the middle of the file (in a weight file: inside the tensor data)."""
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x80
    path.write_bytes(bytes(content))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 1-step run (checkpoint/, final/agent{0,1}/); tests take a copy (`run_copy`)."""
    d = tmp_path_factory.mktemp("finished") / "run"
    ilr.main(FAST + ["--max_steps", "1", "--output_dir", str(d)])
    return d


@pytest.fixture
def run_copy(finished, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    return d


# ---- 1) evaluate.py --resume continues a results file only under the settings that wrote its rows ----

def test_evaluate_resume_refuses_another_model_or_max_tokens_in_one_line(tmp_path, capsys, monkeypatch):
    folders = []
    for seed in (0, 1):                                          # two different models, as final/agent0 and agent1
        model, tokenizer = llm.tiny_model(seed=seed)
        folders.append(tmp_path / f"agent{seed}")
        model.save_pretrained(folders[-1])
        tokenizer.save_pretrained(folders[-1])
    out = tmp_path / "out"
    common = ["--benchmarks", "synthetic", "--limit", "1", "--max-new-tokens", "2", "--out", str(out), "--quiet"]
    evaluate.main(["--model", str(folders[0])] + common)
    rows = (out / "synthetic.jsonl").read_bytes()
    monkeypatch.setattr(llm, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    for args, fragment in [(["--model", str(folders[1])], f"--model differs from the rows already there "
                                                          f"('{folders[0]}' there, '{folders[1]}' now)"),
                           (["--model", str(folders[0]), "--max-new-tokens", "4"],
                            "--max-new-tokens differs from the rows already there (2 there, 4 now)"),
                           (["--model", str(folders[0]), "--seed", "3"], "--seed differs")]:
        with pytest.raises(SystemExit) as e:
            evaluate.main(common + args + ["--resume"])
        one_line_error(capsys, e, f"--resume {out / 'synthetic.jsonl'}", fragment, "use the same settings")
    shutil.rmtree(folders[0])                                    # same folder name, other weights
    shutil.copytree(folders[1], folders[0])
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--model", str(folders[0])] + common + ["--resume"])
    one_line_error(capsys, e, "--model's files differs from the rows already there;")
    assert (out / "synthetic.jsonl").read_bytes() == rows       # nothing added


def test_evaluate_resume_continues_the_same_questions_and_refuses_other_ones(tmp_path, capsys):
    rows = [{"question": f"What is {a} + {b}?", "answer": f"#### {a + b}"} for a, b in [(1, 2), (3, 4), (5, 6)]]
    data_file = tmp_path / "gsm8k.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    common = ["--oracle", "gold", "--benchmarks", "gsm8k", "--data-file", str(data_file), "--out", str(out)]
    evaluate.main(common + ["--limit", "1"])
    assert json.loads((out / "gsm8k.settings.json").read_text())["--oracle"] == "gold"
    grown = evaluate.main(common + ["--limit", "2", "--resume"])     # more of the same questions: continued
    assert grown["benchmarks"]["gsm8k"]["items"] == 2 and grown["benchmarks"]["gsm8k"]["new_items"] == 1
    rows[1]["question"] = "What is 30 + 4?"                      # the same item, another question
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit) as e:
        evaluate.main(common + ["--resume"])
    one_line_error(capsys, e, f"--resume {out / 'gsm8k.jsonl'}: the question, prompt or answer of item '1' is not "
                              f"the one its row was written for")
    assert len((out / "gsm8k.jsonl").read_text().splitlines()) == 2


# ---- 2) checksums: a flipped byte in any checkpoint or final file is refused, naming the file ----

def test_a_flipped_byte_in_any_checkpoint_file_is_refused_on_resume(run_copy, capsys, monkeypatch):
    checkpoint = run_copy / "checkpoint"
    listed = json.loads((checkpoint / llm.CHECKSUMS).read_text())["sha256"]
    assert set(listed) == {"agent0.pt", "agent1.pt", "state.pt", "settings.json"} == set(files(checkpoint)) - {
        llm.CHECKSUMS}                                           # every file of the folder, whatever it holds
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("a model was loaded"))
    before = files(run_copy)
    for name in sorted(listed):
        flip_byte(checkpoint / name)
        with pytest.raises(SystemExit) as e:
            ilr.main(["--resume", str(run_copy), "--max_steps", "2"])
        one_line_error(capsys, e, f"{checkpoint / name}: does not match its checksum")
        flip_byte(checkpoint / name)                             # flipped back: the next file's turn
    assert files(run_copy) == before


def test_a_flipped_byte_in_a_final_model_file_is_refused_by_resume_and_by_evaluate(run_copy, capsys):
    final = run_copy / "final" / "agent1"
    names = sorted(set(files(final)) - {llm.CHECKSUMS})
    assert "model.safetensors" in names and "config.json" in names
    for name in names:
        flip_byte(final / name)
        with pytest.raises(SystemExit) as e:
            ilr.main(["--resume", str(run_copy)])
        one_line_error(capsys, e, f"{final / name}: does not match its checksum", f"or delete {run_copy}/final")
        with pytest.raises(SystemExit) as e:
            evaluate.main(["--model", str(final), "--benchmarks", "synthetic", "--limit", "1", "--quiet",
                           "--out", str(run_copy / "eval-cli")])
        one_line_error(capsys, e, f"{final / name}: does not match its checksum")
        flip_byte(final / name)
    result = evaluate.main(["--model", str(final), "--benchmarks", "synthetic", "--limit", "1", "--quiet",
                            "--max-new-tokens", "2", "--out", str(run_copy / "eval-cli")])   # intact: loads
    assert result["benchmarks"]["synthetic"]["items"] == 1


def test_checksums_cover_whatever_files_a_folder_holds(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    (tmp_path / "sub" / "x.json").write_text("{}")
    assert llm.verify_checksums(tmp_path) is False               # none written yet: nothing to check
    llm.write_checksums(tmp_path)
    assert llm.verify_checksums(tmp_path) is True
    (tmp_path / "sub" / "x.json").unlink()
    with pytest.raises(llm.ModelError, match=r"sub/x.json: missing \(listed in"):
        llm.verify_checksums(tmp_path)


# ---- 3) the run lock appears with its pid in it: no start-up window to take it over in ----

def test_a_second_process_in_the_locks_start_up_window_is_refused(tmp_path, monkeypatch):
    """Process A is delayed while it writes its pid (os.getpid stalls in A's thread until B has tried); B tries
    the lock in that window. Exactly one of them may hold it. (When the lock was created empty and written
    after, B took the empty lock over as stale, and both ran.)"""
    real_getpid, inside, b_done = os.getpid, threading.Event(), threading.Event()

    def slow_getpid():
        if threading.current_thread().name == "A":
            inside.set()
            b_done.wait(10)
        return real_getpid()
    monkeypatch.setattr(os, "getpid", slow_getpid)
    outcome = {}

    def take(name):
        try:
            outcome[name] = ilr.lock_run(tmp_path)
        except ilr.ConfigError as e:
            outcome[name] = e
    a = threading.Thread(target=take, args=("A",), name="A")
    a.start()
    assert inside.wait(10)
    take("B")                                                    # arrives while A writes its pid
    b_done.set()
    a.join(10)
    held = [k for k, v in outcome.items() if isinstance(v, Path)]
    assert len(held) == 1, outcome                               # never both
    refused = outcome["A" if held == ["B"] else "B"]
    assert "is in use by process" in str(refused)
    assert (tmp_path / "lock").read_text() == str(real_getpid())
    assert [p.name for p in tmp_path.iterdir()] == ["lock"]      # the file written aside is gone


def test_a_lock_that_vanishes_while_another_rank_reads_it_is_left_alone(tmp_path, monkeypatch):
    """torchrun: rank 1 holds rank 0's lock path; rank 0 deletes the lock just as rank 1 looks at it (read_text
    here deletes the file first). Rank 1 returns quietly; it used to end the finished run with 'lock: No such
    file or directory' (exit 2), now and then in tests/test_ranks.py. Our own lock is released."""
    lock = tmp_path / "lock"
    lock.write_text(str(os.getpid() + 1))                        # rank 0's pid, not ours
    real_read = Path.read_text

    def read_after_rank0_unlinked(self, *a, **kw):
        self.unlink(missing_ok=True)
        return real_read(self, *a, **kw)
    monkeypatch.setattr(Path, "read_text", read_after_rank0_unlinked)
    ilr.unlock_run(lock)                                         # no FileNotFoundError
    monkeypatch.undo()
    lock.write_text(str(os.getpid() + 1))
    ilr.unlock_run(lock)
    assert lock.read_text() == str(os.getpid() + 1)              # another process's lock is kept
    lock.write_text(str(os.getpid()))
    ilr.unlock_run(lock)
    assert not lock.exists()                                     # ours is released


# ---- 4) disk full, read-only, a file where the folder should be, Ctrl-C outside the loop ----

@pytest.mark.parametrize("fault", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                   RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4672 "
                                                "vs 4566")])            # torch.save's own words for a full disk
def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(run_copy, capsys,
                                                                                     monkeypatch, fault):
    before = files(run_copy / "checkpoint")
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):                  # half a file, then the disk is full
        if Path(path).parent.name == "checkpoint.tmp":
            Path(path).write_bytes(b"PK\x03\x04" + b"\x00" * 1000)
            raise fault
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as e:
        ilr.main(["--resume", str(run_copy), "--max_steps", "2"])
    one_line_error(capsys, e, f"{run_copy / 'checkpoint.tmp'}: could not write the checkpoint of step 2",
                   "MB free on that disk", "the last checkpoint is intact",
                   f"continue with python ilr.py --resume {run_copy}")
    assert not (run_copy / "checkpoint.tmp").exists() and not (run_copy / "lock").exists()
    assert files(run_copy / "checkpoint") == before and llm.verify_checksums(run_copy / "checkpoint")
    monkeypatch.undo()
    ilr.main(["--resume", str(run_copy), "--max_steps", "2"])   # space again: the run goes on from step 1
    assert ilr.checkpoint_step(run_copy / "checkpoint") == 2


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a fresh tmpfs of `size` bytes: a real full disk (root only; skipped elsewhere)."""
    mounted = []

    def mount(size_bytes):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes // 1024}k", "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]})")
        mounted.append(where)
        return where
    yield mount
    for where in mounted:
        subprocess.run(["umount", "--lazy", str(where)], check=True)   # torch may still hold a deleted file


@pytest.mark.parametrize("what", ["checkpoint", "final"])
def test_a_real_full_disk_is_one_line_and_leaves_nothing_half_written(finished, small_disk, capsys, what):
    """On a tmpfs with room for the run and half of the next save: torch.save and safetensors fail with their own
    errors (no errno); one line, the half-written folder removed, the checkpoint as it was."""
    rest = size(finished) - size(finished / "final")
    disk = small_disk(rest + size(finished / what) // 2 + 2**20)
    run = disk / "run"
    shutil.copytree(finished, run, ignore=lambda d, names: ["final"] if d == str(finished) else [])
    before = files(run / "checkpoint")
    with pytest.raises(SystemExit) as e:                         # "checkpoint": step 2 is saved; "final": only
        ilr.main(["--resume", str(run)] + (["--max_steps", "2"] if what == "checkpoint" else []))  # the models
    line = one_line_error(capsys, e, "could not write", "MB free on that disk", "the last checkpoint is intact")
    assert line.startswith(f"ilr.py: error: {run / what}")
    assert files(run / "checkpoint") == before and llm.verify_checksums(run / "checkpoint")
    assert not [p for p in run.rglob("*.tmp")]


def test_a_read_only_output_directory_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only file system (EROFS) where the run would write; patched, since root writes through chmod."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real):
        def call(path, *args, **kwargs):
            if str(path).startswith(str(ro)):
                if real is real_mkdir and os.path.exists(path):   # as the kernel: EEXIST comes first
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *args, **kwargs)
        return call
    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("a model was loaded"))
    for out, named in [(ro, ro / "lock"), (ro / "new", ro / "new")]:   # the folder, or one to create in it
        with pytest.raises(SystemExit) as e:
            ilr.main(FAST + ["--output_dir", str(out)])
        one_line_error(capsys, e, f"{named}: Read-only file system; choose a writable --output_dir")
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("below", ["", "below"])
def test_an_output_dir_that_is_a_file_or_below_one_is_one_line(tmp_path, capsys, monkeypatch, below):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("a model was loaded"))
    out = a_file / below if below else a_file
    with pytest.raises(SystemExit) as e:
        ilr.main(FAST + ["--output_dir", str(out)])
    one_line_error(capsys, e, f"--output_dir {out}: {a_file} is a file, not a directory")
    assert a_file.read_text() == "mine"


def ctrl_c(*args, **kwargs):
    """What the terminal sends on Ctrl-C: SIGINT to this process, handled by whatever handler is set."""
    signal.raise_signal(signal.SIGINT)


def stopped_by_ctrl_c(argv):
    """Run ilr.main; the Ctrl-C must end it with a one-line exit, never a KeyboardInterrupt traceback."""
    try:
        ilr.main(argv)
    except SystemExit as e:
        return str(e.code)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of ilr.main as a KeyboardInterrupt (a traceback on the console)")
    pytest.fail("the run went on after Ctrl-C")


def test_ctrl_c_while_loading_the_models_is_one_line_and_keeps_the_checkpoint(tmp_path, run_copy, monkeypatch):
    monkeypatch.setattr(ilr, "make_agents", ctrl_c)
    message = stopped_by_ctrl_c(FAST + ["--output_dir", str(tmp_path / "new")])            # a new run
    assert message.count("\n") == 0 and "stopped by Ctrl-C outside the training loop" in message
    assert f"continue with python ilr.py --resume {tmp_path / 'new'}" in message
    assert not (tmp_path / "new" / "lock").exists()
    before = files(run_copy / "checkpoint") | files(run_copy / "final")
    message = stopped_by_ctrl_c(["--resume", str(run_copy), "--max_steps", "2"])           # a resumed one
    assert "stopped by Ctrl-C outside the training loop" in message
    assert files(run_copy / "checkpoint") | files(run_copy / "final") == before
    assert not [p for p in run_copy.rglob("*") if p.name.endswith((".tmp", ".part")) or p.name == "lock"]


def test_ctrl_c_during_the_base_evaluation_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(ilr.evaluate, "evaluate_model", ctrl_c)
    message = stopped_by_ctrl_c(FAST + ["--eval_base", "--output_dir", str(tmp_path / "run")])
    assert "stopped by Ctrl-C outside the training loop" in message
    assert not (tmp_path / "run" / "base.json").exists()        # not written from half an evaluation


def test_ctrl_c_during_the_final_save_leaves_no_half_model_and_keeps_the_checkpoint(run_copy, monkeypatch):
    shutil.rmtree(run_copy / "final")
    before = files(run_copy / "checkpoint")
    from transformers import LlamaForCausalLM                  # the tiny model's class
    real = LlamaForCausalLM.save_pretrained

    def save_then_ctrl_c(self, path, *args, **kwargs):          # the weights are written, the tokenizer is not
        real(self, path, *args, **kwargs)
        ctrl_c()
    monkeypatch.setattr(LlamaForCausalLM, "save_pretrained", save_then_ctrl_c)
    message = stopped_by_ctrl_c(["--resume", str(run_copy)])
    assert "stopped by Ctrl-C outside the training loop" in message
    assert not (run_copy / "final").exists() or list((run_copy / "final").iterdir()) == []   # no half a model
    assert files(run_copy / "checkpoint") == before
    monkeypatch.undo()
    ilr.main(["--resume", str(run_copy)])                        # finishes: the final models, checked
    assert llm.verify_checksums(run_copy / "final" / "agent0")


# ---- 5) a hand-edited config.json: the checkpoint knows the settings it was trained with ----

@pytest.mark.parametrize("key,value", [("learning_rate", 0.5), ("num_generations", 8)])
def test_an_edited_config_json_is_refused_on_resume(run_copy, capsys, monkeypatch, key, value):
    config = json.loads((run_copy / "config.json").read_text())
    trained = config[key]
    config[key] = value
    (run_copy / "config.json").write_text(json.dumps(config, indent=1))
    before = files(run_copy)
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as e:
        ilr.main(["--resume", str(run_copy), "--max_steps", "2"])
    one_line_error(capsys, e, f"{run_copy}/config.json: {key} is {value!r} but the checkpoint was trained with "
                              f"{trained!r}")
    assert files(run_copy) == before


def test_settings_that_may_change_on_resume_pass_the_checkpoint_check(run_copy):
    cfg, _ = ilr.parse_args(["--resume", str(run_copy), "--max_steps", "7", "--eval_limit", "3"])
    ilr.check_checkpoint(run_copy, run_copy / "checkpoint", cfg)  # RESUMABLE settings: no complaint
    moved = run_copy.with_name("moved")
    run_copy.rename(moved)                                       # a moved run directory: output_dir differs
    cfg, _ = ilr.parse_args(["--resume", str(moved)])
    ilr.check_checkpoint(moved, moved / "checkpoint", cfg)
