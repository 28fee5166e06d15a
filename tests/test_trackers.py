"""trackers.py (--report_to): TensorBoard events equal metrics.jsonl, a resumed run logs each step once, a
missing package is one line before any model loads, and W&B / trackio receive the same rows (fake modules)."""
import importlib.machinery
import importlib.util
import json
import sys
import types

import pytest

import ilr
import trackers
from test_ilr import FAST, SMALL, crash_at, metric_rows, mixed_rewards, run


def read_events(folder) -> dict:
    """tag -> [(step, value)] of every scalar in a TensorBoard folder, as TensorBoard shows them (a later
    session's purge_step applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_the_rows_of_metrics_jsonl(tmp_path):
    run(tmp_path, "--max_steps", "2", "--eval_limit", "1", "--report_to", "tensorboard")
    rows = metric_rows(tmp_path / "run")
    events = read_events(tmp_path / "run" / "tensorboard")
    expected = {}
    for row in rows:
        for key, value in trackers.scalars(row).items():
            expected.setdefault(key, []).append((row["step"], value))
    assert set(events) == set(expected) and "agent1/calibrated_reward" in events and "step" not in events
    for tag, points in expected.items():                              # float32 in the event file
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-6), tag
    assert (tmp_path / "run" / "curves.png").is_file()                # the default outputs stay


def test_a_resumed_run_logs_each_step_once(tmp_path, monkeypatch):
    """Step 3 is logged, then the run dies before its checkpoint (saved at 2): the resumed run logs 3 again, and
    TensorBoard shows [1, 2, 3, 4], not [1, 2, 3, 3, 4] (purge_step, as metrics.jsonl is cut back)."""
    monkeypatch.setattr(ilr, "group_rewards", mixed_rewards)
    crash_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, *SMALL, "--max_steps", "4", "--save_steps", "2", "--report_to", "tensorboard")
    d = tmp_path / "run"
    assert [s for s, _ in read_events(d / "tensorboard")["reward"]] == [1, 2, 3]   # closed on the crash: flushed
    monkeypatch.undo()                                                # no crash now
    monkeypatch.setattr(ilr, "group_rewards", mixed_rewards)
    ilr.main(["--resume", str(d)])
    events = read_events(d / "tensorboard")["reward"]
    assert [s for s, _ in events] == [1, 2, 3, 4]
    assert [v for _, v in events] == pytest.approx([r["reward"] for r in metric_rows(d)], rel=1e-6)


@pytest.mark.parametrize("tracker", trackers.TRACKERS)
def test_a_missing_tracker_is_one_line_naming_the_package(tmp_path, monkeypatch, capsys, tracker):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a))
    monkeypatch.setattr(ilr, "make_agents", lambda cfg: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as e:
        ilr.main(FAST + ["--output_dir", str(tmp_path / "run"), "--report_to", f"tensorboard,{tracker}"
                         if tracker != "tensorboard" else tracker])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == (f"ilr.py: error: --report_to {tracker}: the package {tracker!r} is not "
                                         f"installed (pip install {tracker})\n")
    assert not (tmp_path / "run").exists()


def fake_tracker(name: str, calls: list) -> types.ModuleType:
    """A module with wandb's / trackio's calls (init, log, finish) that records them."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)       # find_spec reads it from sys.modules
    run = types.SimpleNamespace(log=lambda values, step: calls.append((name, "log", step, values)),
                                finish=lambda: calls.append((name, "finish")))
    module.init = lambda **kwargs: calls.append((name, "init", kwargs)) or run
    module.log, module.finish = run.log, run.finish
    return module


def test_wandb_and_trackio_receive_the_rows_and_a_resumed_run_continues_the_same_one(tmp_path, monkeypatch):
    calls = []
    for name in ("wandb", "trackio"):
        monkeypatch.setitem(sys.modules, name, fake_tracker(name, calls))
    assert trackers.check("wandb,trackio") is None
    row = {"step": 1, "reward": 0.5, "ilr/cooperation_share/level3": None}
    for done in (0, 1):                                                # a run, then its resumption
        t = trackers.Trackers("wandb,trackio", tmp_path, {"seed": 0}, done)
        t.log(row | {"step": done + 1})
        t.close()
    inits = [c[2] for c in calls if c[1] == "init"]
    assert [i["resume"] for i in inits] == ["allow"] * 4 and all(i["config"] == {"seed": 0} for i in inits)
    wandb_ids = [i["id"] for i in inits if "id" in i]
    assert len(wandb_ids) == 2 and wandb_ids[0] == wandb_ids[1] == (tmp_path / "wandb_id.txt").read_text()
    logs = [c for c in calls if c[1] == "log"]
    assert logs == [(n, "log", s, {"reward": 0.5}) for s in (1, 2) for n in ("wandb", "trackio")]
    assert sum(c[1] == "finish" for c in calls) == 4


def test_report_to_is_resumable_and_recorded(tmp_path):
    run(tmp_path, *SMALL, "--max_steps", "1")
    ilr.main(["--resume", str(tmp_path / "run"), "--max_steps", "2", "--report_to", "tensorboard"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["report_to"] == "tensorboard"
    assert [s for s, _ in read_events(tmp_path / "run" / "tensorboard")["reward"]] == [2]
