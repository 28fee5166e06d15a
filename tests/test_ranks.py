"""ranks.py: one agent per process under torchrun (gloo on the CPU) is the same run as one process; a failed or lost
rank stops the others in one line, without a hang; the run resumes.

Run as a script (`torchrun ... tests/test_ranks.py ILR_FLAGS`), this file is ilr.py with a reward that differs
within every group of the random tiny model's answers, so that every step really updates the weights (the tiny
model's answers are random tokens: the grader gives them all 0, and a run with all-zero rewards never trains)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ilr  # noqa: E402
import ranks  # noqa: E402

# the tiny preset with eval on (the base row's shared evaluation of two identical agents) and the self-ranked
# difficulty (the gathered self-ranking), beta > 0 (each rank's reference model), a checkpoint every step
ARGS = ["--preset", "tiny", "--max_steps", "3", "--beta", "0.04", "--learning_rate", "1e-3",
        "--num_generations", "4", "--max_completion_length", "6", "--eval_limit", "2", "--eval_max_new_tokens", "2"]


def mixed_rewards(groups, format_reward, correct=None, reward="accuracy"):
    """As tests/test_ilr.py: the mean of (id mod 97) / 96 over each answer's token ids, different in every group."""
    return torch.tensor([[sum(t % 97 for t in c) / 96 / max(len(c), 1) for c in g.completion_ids] for g in groups])


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")   # one thread per process, as torchrun's


def one_process(args, **kw):
    return subprocess.run([sys.executable, __file__, *args], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=300, **kw)


def torchrun(args, nproc=2, **kw):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            __file__, *args]


def finished(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    quiet = "\n".join(line for line in done.stderr.splitlines() if not re.match(r"\s*(ILR|synthetic|self-rank)", line))
    assert done.returncode == 0, done.stdout[-2000:] + quiet[-6000:]
    return done


def rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if "seconds" not in k and "per_second" not in k}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def final_weights(run: Path, i: int) -> dict:
    from safetensors.torch import load_file
    return load_file(run / "final" / f"agent{i}" / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run as one process and as two ranks (torchrun, gloo on the CPU), one thread each."""
    out = tmp_path_factory.mktemp("ranks")
    finished(one_process(ARGS + ["--output_dir", str(out / "one")]))
    finished(subprocess.run(torchrun(ARGS + ["--output_dir", str(out / "two")]), cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=300))
    return out / "one", out / "two"


def test_two_ranks_give_the_metrics_weights_transcripts_and_results_of_one_process(runs):
    one, two = runs
    assert len(rows(one)) == 3 and rows(one) == rows(two)            # every metric of every step, exactly
    assert all(r["frac_reward_zero_std"] < 1 for r in rows(one))     # every step trained (no all-zero groups)
    for i in (0, 1):
        a, b = final_weights(one, i), final_weights(two, i)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"agent{i}'s weights differ"
    import llm
    start = llm.tiny_model(seed=0)[0].state_dict()                   # they did move: not an untrained pair
    assert not torch.equal(final_weights(two, 1)["model.layers.0.mlp.up_proj.weight"],
                           start["model.layers.0.mlp.up_proj.weight"])
    for name in ("transcripts/step00003.txt", "results.json", "base.json"):
        assert (one / name).read_text() == (two / name).read_text(), name
    irt = [json.loads((run / "irt.json").read_text()) for run in (one, two)]      # its stats count cache hits:
    assert [{k: v for k, v in x.items() if k != "stats"} for x in irt][0] == \
        [{k: v for k, v in x.items() if k != "stats"} for x in irt][1]            # the second run finds the first's
    assert (two / "rank1.log").is_file() and not (one / "rank1.log").exists()     # rank 1 wrote only its log
    names = lambda run: sorted(p.name for p in (run / "checkpoint").iterdir())      # noqa: E731
    assert names(two) == names(one)                                                  # the same checkpoint files


@pytest.mark.parametrize("flags", [["--use_peft", "--lora_dropout", "0.1"], ["--bf16"]], ids=["adapters", "bf16"])
def test_two_ranks_with_adapters_or_bf16_give_the_run_of_one_process(tmp_path, flags):
    """Each rank its own base + adapter (dropout draws seeded per update), or bf16 autocast on the CPU."""
    args = ARGS + ["--max_steps", "2", "--no-eval_base"] + flags
    finished(one_process(args + ["--output_dir", str(tmp_path / "one")]))
    finished(subprocess.run(torchrun(args + ["--output_dir", str(tmp_path / "two")]), cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=300))
    assert len(rows(tmp_path / "one")) == 2 and rows(tmp_path / "one") == rows(tmp_path / "two")
    for i in (0, 1):
        a, b = (sorted((tmp_path / run / "final" / f"agent{i}").glob("*.safetensors")) for run in ("one", "two"))
        assert [p.name for p in a] == [p.name for p in b] and a[0].read_bytes() == b[0].read_bytes()


def test_resuming_with_another_number_of_processes_is_refused_in_one_line(runs, capsys):
    _, two = runs
    with pytest.raises(SystemExit) as stop:
        ilr.main(["--resume", str(two), "--max_steps", "4"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1, err
    assert "written by 2 process(es) and this run has 1" in err and "torchrun --nproc_per_node 2" in err


def test_a_world_size_other_than_the_number_of_agents_is_refused_before_loading(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit) as stop:
        ilr.main(["--preset", "tiny", "--output_dir", "/nonexistent/never-written"])
    assert stop.value.code == 2
    assert "torchrun started 3 ranks for 2 agents" in capsys.readouterr().err


def test_a_lost_rank_stops_the_other_in_one_line_without_a_hang_and_the_run_resumes(tmp_path):
    run = tmp_path / "killed"
    args = ARGS + ["--max_steps", "40", "--eval_limit", "1", "--no-eval_base", "--output_dir", str(run)]
    proc = subprocess.Popen(torchrun(args), cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        pids = None
        for line in proc.stdout:                  # "[ilr] 2 ranks: rank 0 pid 11 on host, rank 1 pid 12 on host"
            pids = pids or (re.findall(r"rank (\d) pid (\d+)", line) or None)
            if re.match(r"\s*step\s+2 \|", line):
                break
        assert pids, "no ranks line"
        victim = int(dict(pids)["1"])
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        _, err = proc.communicate(timeout=90)      # a hang fails here
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    ours = [line for line in err.splitlines() if line.startswith("ilr.py: error:")]
    assert proc.returncode != 0 and len(ours) == 1, err[-3000:]
    assert f"rank 1 (pid {victim}) is lost" in ours[0] or "stopped by torchrun" in ours[0], ours
    assert took < 60, took
    done = json.loads((run / "checkpoint" / "settings.json").read_text())
    assert done["world_size"] == 2
    resumed = subprocess.run(torchrun(["--resume", str(run)]), cwd=ROOT, env=env(), capture_output=True,
                             text=True, timeout=300)
    finished(resumed)
    assert "resuming after step" in resumed.stdout
    assert [r["step"] for r in rows(run)] == list(range(1, 41))


# ---- the exchanges themselves, in two processes spawned here ----

def _worker(r, port, what, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r))
    ranks.start(timeout_s=30)
    try:
        if what == "each_agent":
            result = ranks.each_agent(2, lambda i: (i, ranks.rank(), f"text of agent {i}"))
        elif what == "on_main":
            result = ranks.on_main(lambda: ranks.rank() * 10 + 7)
        elif what == "fails":
            result = ranks.each_agent(2, lambda i: 1 / 0 if i == 1 else i)
        else:
            raise ValueError(what)
        out.put((r, "ok", result))
    except Exception as e:
        out.put((r, type(e).__name__, str(e)))
    finally:
        ranks.stop()


def spawn(what):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, port, what, out)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict((r, (kind, value)) for r, kind, value in (out.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=30)
    return got


def test_each_agent_runs_agent_i_in_rank_i_and_every_rank_gets_all_results_in_agent_order():
    got = spawn("each_agent")
    expected = [(0, 0, "text of agent 0"), (1, 1, "text of agent 1")]   # agent i computed by rank i
    assert got == {0: ("ok", expected), 1: ("ok", expected)}


def test_on_main_runs_once_on_rank_0_and_shares_its_result():
    assert spawn("on_main") == {0: ("ok", 7), 1: ("ok", 7)}


def test_an_error_on_one_rank_stops_every_rank_naming_it():
    got = spawn("fails")
    assert got[1] == ("ZeroDivisionError", "division by zero")                 # the failed rank: its own error
    assert got[0][0] == "RankError" and got[0][1].startswith("rank 1 failed (ZeroDivisionError: division by zero")


def test_one_process_is_a_plain_loop():
    assert not ranks.active() and ranks.owns(1) and ranks.world_size() == 1
    assert ranks.each_agent(3, lambda i: i * i) == [0, 1, 4] and ranks.on_main(lambda: "x") == "x"


if __name__ == "__main__":            # torchrun tests/test_ranks.py ILR_FLAGS: ilr.py with mixed_rewards
    import idea3
    ilr.group_rewards = mixed_rewards
    idea3.BATCH_ADAPTERS = False      # one process: one generate call per adapter agent, as each rank makes its own
    ilr.main(sys.argv[1:])
