"""notebooks/ilr_one_step.ipynb: it runs headless from top to bottom (the tiny model in the default suite, the
embedded SmolLM2-135M in the slow one), every section prints what it promises, and the .ipynb and its jupytext
pair notebooks/ilr_one_step.py hold the same cells.

`python tests/test_notebook.py --store` executes the notebook on the embedded model and writes it back with its
outputs (what the repository keeps); `jupytext --sync notebooks/ilr_one_step.py` after editing either file."""
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "ilr_one_step.ipynb"
PAIRED = NOTEBOOK.with_suffix(".py")


def execute(model: str, env: dict, timeout: int = 3600):
    """The notebook executed in a fresh kernel started in notebooks/ (as Jupyter does): -> the notebook node.
    timeout: seconds per cell (a busy 2-core machine takes minutes for the embedded model's last cell).
    Kernel "python3" is ipykernel's; jupyter_client starts it with this interpreter (a kernel.json whose argv[0]
    is "python" runs sys.executable), so the kernel sees this environment's packages."""
    import os

    import nbclient
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env | {"ILR_NOTEBOOK_MODEL": model})          # the kernel inherits the environment
    try:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def cell_text(nb) -> list[str]:
    """The printed text of each code cell (stdout and plain-text results)."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(o["text"])
            elif "data" in o and "text/plain" in o["data"]:
                parts.append(o["data"]["text/plain"])
        out.append("".join(parts))
    return out


def check_sections(nb) -> None:
    """What a student must see: the mode table, the Idea3 prompts and answers per agent, the grades, Eq. 5 with
    the peer statistics, advantages and loss, the update, the curve and each agent alone before/after."""
    text = "\n".join(cell_text(nb))
    for expected in ("abilities γ =", "mean P  mode", "-- one per level", "1. Idea Sharing", "2. Idea Analysis",
                     "3. Idea Fusion, answer 1", "agent 0's prompt", "group (stage, agent, question)",
                     "frac_reward_zero_std", "peer statistics: R_avg =", "(Eq. 5)", "advantages with Eq. 5",
                     "loss = ", "of the weights changed", "step ", "each agent alone on", "notebook time:"):
        assert expected in text, f"the notebook's output lacks {expected!r}"
    assert "cooperation" in text and "competition" in text               # both modes in the table
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 1, "the live curve: one figure left after clear_output"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_the_notebook_runs_headless_with_the_tiny_model():
    start = time.time()
    # one thread: the random model is too small to gain from more, and a busy machine slows threads 5x
    nb = execute("tiny", {"ILR_NOTEBOOK_STEPS": "2", "ILR_NOTEBOOK_EVAL": "4", "OMP_NUM_THREADS": "1"})
    check_sections(nb)
    print(f"notebook with the tiny model: {time.time() - start:.0f} s")


@pytest.mark.slow
def test_the_notebook_runs_with_the_embedded_model():
    check_sections(execute("smollm2-135m", {}))


def test_the_stored_notebook_has_outputs_of_the_embedded_model():
    import nbformat
    text = "\n".join(cell_text(nbformat.read(NOTEBOOK, as_version=4)))
    assert "agent0:smollm2-135m" in text, "store the outputs of a run on the embedded model (--store)"
    assert NOTEBOOK.stat().st_size < 400_000, "outputs too large for the repository"


def test_the_ipynb_and_its_jupytext_pair_hold_the_same_cells():
    import jupytext
    import nbformat
    py = jupytext.read(PAIRED)
    ipynb = nbformat.read(NOTEBOOK, as_version=4)
    assert [(c.cell_type, c.source) for c in py.cells] == [(c.cell_type, c.source) for c in ipynb.cells], \
        "run `jupytext --sync notebooks/ilr_one_step.py`"


def test_every_section_names_its_function_and_points_to_an_exercise_that_exists():
    """Sections 1-8 each name the project's function(s) in their heading and end with one "change this and
    re-run" pointer whose exercise number and title are those of EXERCISES.md."""
    import re

    import nbformat
    markdown = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "markdown"]
    sections = [m for m in markdown if re.match(r"## [1-8]\. .* — `\w+\.\w+`", m)]
    assert len(sections) == 8, [m.splitlines()[0] for m in markdown if m.startswith("## ")]
    pointers = re.findall(r"`EXERCISES\.md`,\s+exercise\s+(\d+)\s+\(([^)]+)\)", "\n".join(markdown))
    assert len(pointers) == 8 and "\n".join(markdown).count("**Change this and re-run**") == 8
    headings = dict(re.findall(r"^## (\d+)\. (?:\(extra\) )?(.+)$", (ROOT / "EXERCISES.md").read_text(), re.M))
    for number, title in pointers:
        title = " ".join(title.split())                                   # a title may wrap in the cell
        assert headings.get(number, "").lower().startswith(title.lower()), (number, title, headings.get(number))


if __name__ == "__main__" and sys.argv[1:] == ["--store"]:
    import nbformat
    start = time.time()
    executed = execute("smollm2-135m", {})
    check_sections(executed)
    for cell in executed.cells:                  # the execution's timestamps would make every run a diff
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(executed, NOTEBOOK)
    print(f"stored {NOTEBOOK} ({NOTEBOOK.stat().st_size // 1000} kB) after {time.time() - start:.0f} s")
