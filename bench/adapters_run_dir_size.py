"""
bench/adapters_run_dir_size.py — what one step leaves in a run directory, whole models vs --use_peft (issue 21).

    .venv/bin/python bench/adapters_run_dir_size.py [MODEL]        # default smollm2-135m; writes /tmp/adapters-size-*

Builds two agents as ilr.make_agents does, gives each one GRPO update (tests/test_adapters.py's `step`: so AdamW's
states exist), then writes what ilr.py writes: RUN/checkpoint (ilr.save_checkpoint) and RUN/final/agent{i}
(save_pretrained of the model, or of the adapter, and of the tokenizer); prints `du -sh` of both.
"""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import ilr  # noqa: E402
from test_adapters import step  # noqa: E402


def main(model: str = "smollm2-135m"):
    for peft in (True, False):
        run = Path(f"/tmp/adapters-size-{'peft' if peft else 'full'}")
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        agents = ilr.make_agents(ilr.Config(models=model, device="cpu", use_peft=peft, learning_rate=1e-4))
        for a in agents:
            step(a)
        ilr.save_checkpoint(run, agents, 1)
        for i, a in enumerate(agents):
            a.model.save_pretrained(run / "final" / f"agent{i}")
            a.tokenizer.save_pretrained(run / "final" / f"agent{i}")
        print(subprocess.run(["du", "-sh", run / "checkpoint", run / "final"], capture_output=True,
                             text=True).stdout, flush=True)
        del agents


if __name__ == "__main__":
    main(*sys.argv[1:2])
