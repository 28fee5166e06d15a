"""
trackers.py — `--report_to`: ilr.py's per-step metrics sent to the experiment trackers users already run.

    python ilr.py --preset demo --report_to tensorboard      # events in runs/demo/tensorboard/
    tensorboard --logdir runs                                # then open http://localhost:6006
    python ilr.py --preset demo --report_to wandb,trackio    # several at once (a comma list)

The name and the values are TRL's / HF Trainer's `report_to`: 'none' (the default: metrics.jsonl and curves.png
only, as always), 'tensorboard', 'wandb', 'trackio', or a comma list of them. Each tracker receives exactly the
rows of RUN/metrics.jsonl (same keys, `step` as the x-axis; a None value, e.g. a level absent from a step's batch,
is skipped). Data flow: ilr.train_and_evaluate opens the trackers once before the first step, calls
`log(metrics)` after each step's row is written, and closes them at the end (also on Ctrl-C or an error).

Choices (ours; TRL leaves them to the trackers' own integrations):
1. Each tracker is an optional dependency, imported only when it is asked for; `check` (called by
   ilr.check_config, before any model loads) tests that the package can be found and says in one line what to
   `pip install` when it cannot.
2. Resume: the TensorBoard writer of a resumed run opens the same folder with `purge_step` = the first step it
   will log, so steps a crashed run logged after its last checkpoint are dropped, not shown twice (as
   metrics.jsonl is cut back to the checkpoint). W&B continues the same run (its id is kept in RUN/wandb_id.txt,
   resume="allow"); trackio continues the run of the same name (resume="allow").
3. Project name: $WANDB_PROJECT / $TRACKIO_PROJECT if set (the trackers' own variables), else "ilr"; the run's
   name is its directory's name, its config the run's Config.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import secrets
from pathlib import Path

TRACKERS = ("tensorboard", "wandb", "trackio")   # TRL's / HF Trainer's report_to values we support
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}   # what to pip install


def parse(report_to: str) -> list[str]:
    """The tracker names of a --report_to value ('none' -> none).

    >>> parse("none"), parse("tensorboard"), parse("tensorboard, wandb")
    ([], ['tensorboard'], ['tensorboard', 'wandb'])
    """
    names = [n.strip() for n in report_to.split(",")]
    return [] if names == ["none"] else names


def check(report_to: str) -> str | None:
    """None if every tracker named is known and installed, else the one-line reason (ilr.check_config raises it).

    >>> check("none") is None, check("mlflow")
    (True, "--report_to must be 'none' or a comma list of tensorboard, wandb, trackio, got 'mlflow'")
    """
    names = parse(report_to)
    if not set(names) <= set(TRACKERS) or len(set(names)) != len(names):
        return f"--report_to must be 'none' or a comma list of {', '.join(TRACKERS)}, got {report_to!r}"
    for name in names:
        if importlib.util.find_spec(PACKAGES[name]) is None:      # found, not imported (choice 1)
            return f"--report_to {name}: the package {PACKAGES[name]!r} is not installed (pip install {PACKAGES[name]})"
    return None


def scalars(metrics: dict) -> dict:
    """The values a tracker receives from one metrics row: every number but `step` (the x-axis); None skipped.

    >>> scalars({"step": 3, "reward": 0.5, "ilr/cooperation_share/level2": None, "completion_tokens": 12})
    {'reward': 0.5, 'completion_tokens': 12}
    """
    return {k: v for k, v in metrics.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Trackers:
    """The open trackers of one run: `log(metrics)` once per step, `close()` at the end. With --report_to none it
    holds nothing and both are no-ops."""

    def __init__(self, report_to: str, run: Path, config: dict, done: int):
        self.sinks = []                                           # (log(values, step), close()) per tracker
        for name in parse(report_to):
            self.sinks.append(OPENERS[name](Path(run), config, done))

    def log(self, metrics: dict) -> None:
        values = scalars(metrics)
        for log, _ in self.sinks:
            log(values, metrics["step"])

    def close(self) -> None:
        for _, close in self.sinks:
            close()
        self.sinks = []


def open_tensorboard(run: Path, config: dict, done: int):
    from torch.utils.tensorboard import SummaryWriter             # needs the tensorboard package (choice 1)
    # purge_step (choice 2): a reader drops the events of earlier sessions at steps >= done + 1
    writer = SummaryWriter(log_dir=str(run / "tensorboard"), purge_step=done + 1 if done else None)

    def log(values: dict, step: int):
        for key, value in values.items():
            writer.add_scalar(key, value, global_step=step)
    return log, writer.close                                     # close() flushes


def open_wandb(run: Path, config: dict, done: int):
    wandb = importlib.import_module("wandb")
    id_file = run / "wandb_id.txt"                               # choice 2: a resumed run continues the same one
    if not id_file.is_file():
        id_file.write_text(secrets.token_hex(4))
    handle = wandb.init(project=os.environ.get("WANDB_PROJECT", "ilr"), name=run.name, config=config,
                        dir=str(run), id=id_file.read_text().strip(), resume="allow")
    return (lambda values, step: handle.log(values, step=step)), handle.finish


def open_trackio(run: Path, config: dict, done: int):
    trackio = importlib.import_module("trackio")
    trackio.init(project=os.environ.get("TRACKIO_PROJECT", "ilr"), name=run.name, config=config, resume="allow")
    return (lambda values, step: trackio.log(values, step=step)), trackio.finish


OPENERS = {"tensorboard": open_tensorboard, "wandb": open_wandb, "trackio": open_trackio}
