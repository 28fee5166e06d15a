"""What a student meets first (issue 24): `python ilr.py --help` with the real defaults, every preset and the plot
subcommand; a misspelt or abbreviated flag refused in one line naming the closest real flag, on every command line;
transcripts whose trained answers carry their grade, rewards and advantage, matching metrics.jsonl; README and
EXERCISES.md commands that work after the README's own set-up steps."""
import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import evaluate
import idea3
import ilr
import irt
import llm

ROOT = Path(__file__).resolve().parents[1]


def help_text(capsys, *argv) -> str:
    """`python ilr.py ARGV` (which ends in --help): its output, exit code 0."""
    with pytest.raises(SystemExit) as e:
        ilr.main(list(argv))
    assert e.value.code == 0
    return capsys.readouterr().out


def help_entries(text: str) -> dict[str, str]:
    """--flag -> its whole help entry on one line (argparse wraps an entry over several lines)."""
    entries, current = {}, None
    for line in text.splitlines():
        if re.match(r"^  -", line):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


# ---- --help: real defaults, every preset, the plot subcommand ----

def test_help_shows_each_settings_config_default(capsys):
    entries = help_entries(help_text(capsys, "--help"))
    assert "(default: 1e-06)" in entries["--learning_rate"]
    assert "(default: 4)" in entries["--num_generations"] and "(default: on)" in entries["--calibration"]
    assert "default: None" not in " ".join(entries.values())
    for f in ilr.fields(ilr.Config):                       # every field, whatever a later branch adds
        value = getattr(ilr.Config(), f.name)
        if value is not None:
            shown = ("on" if value else "off") if isinstance(value, bool) else str(value)
            assert f"(default: {shown})" in entries[f"--{f.name}"], f.name


def test_help_with_a_preset_shows_the_presets_values(capsys):
    entries = help_entries(help_text(capsys, "--preset", "demo", "--help"))
    assert "(default: 2e-05, from --preset demo)" in entries["--learning_rate"]
    assert "(default: 12, from --preset demo)" in entries["--max_steps"]
    assert "(default: 0.2)" in entries["--epsilon"]                   # not in the preset: Config's value
    entries = help_entries(help_text(capsys, "--preset", "tiny", "--help"))
    assert "(default: tiny, from --preset tiny)" in entries["--models"]


def test_help_lists_every_preset_with_one_line_and_the_plot_subcommand(capsys):
    text = help_text(capsys, "--help")
    assert set(ilr.PRESET_HELP) == set(ilr.PRESETS)
    for name in ilr.PRESETS:
        assert re.search(rf"^  {re.escape(name)} +\S", text, re.M), name
    tiny = " ".join(text.split("  tiny", 1)[1].split("subcommand")[0].split())
    assert "random 2-layer model" in tiny and "plumbing" in tiny
    assert "python ilr.py plot RUN_DIR" in text


def test_plot_help_prints_its_usage(capsys):
    text = help_text(capsys, "plot", "--help")
    assert text.startswith("usage: ilr.py plot") and "RUN_DIR" in text


# ---- a misspelt or abbreviated flag: one line, exit 2, the closest real flag ----

REFUSED = [  # (a command line's main, argv, the flag it names)
    (ilr.main, ["--preset", "tiny", "--num_generation", "3"], "--num_generations"),       # an abbreviation
    (ilr.main, ["--preset", "tiny", "--temprature", "0.5"], "--temperature"),           # a misspelling
    (ilr.main, ["--learning-rat=1e-3"], "--learning-rate"),
    (ilr.main, ["plot", "runs/x", "--colour"], None),                                      # plot's parser too
    (evaluate.main, ["--limt", "3"], "--limit"),
    (evaluate.main, ["--max-new", "3"], "--max-new-tokens"),
    (irt.main, ["validate", "--group-siz", "3"], "--group-size"),
    (idea3.main, ["show", "--temp", "0.5"], "--temperature"),
    (idea3.main, ["compare", "--modez", "single"], "--modes"),
]
# What each command line does right after parsing: a flag taken by mistake fails the test here, before any run
AFTER_PARSING = [(ilr, "check_config"), (evaluate, "check_eval_config"), (irt, "validate"), (idea3, "setup")]


@pytest.mark.parametrize("main,argv,closest", REFUSED)
def test_an_abbreviated_or_misspelt_flag_is_one_line_naming_the_closest(tmp_path, monkeypatch, capsys, main, argv,
                                                                         closest):
    monkeypatch.chdir(tmp_path)
    for module, name in AFTER_PARSING:
        monkeypatch.setattr(module, name, lambda *args, **kwargs: pytest.fail(f"{argv} was accepted"))
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    flag = next(a for a in argv if a.startswith("--") and a.split("=")[0] not in ("--preset",)).split("=")[0]
    assert e.value.code == 2 and err.count("\n") == 1 and "usage:" not in err, err
    assert re.match(r"^[\w.]+( \w+)?: error: unknown flag " + re.escape(flag) + "; ", err), err
    assert (f"did you mean {closest}?" in err) if closest else ("--help lists every flag" in err)
    assert not list(tmp_path.iterdir())                                  # nothing ran, nothing written


def test_abbreviations_are_refused_by_the_shared_config_parser():
    @dataclasses.dataclass
    class Demo:
        num_generations: int = dataclasses.field(default=4, metadata={"help": "G"})
    assert llm.parse_config(Demo, ["--num-generations", "3"], "demo").num_generations == 3
    with pytest.raises(SystemExit):
        llm.parse_config(Demo, ["--num-gen", "3"], "demo")


# ---- transcripts carry each trained answer's grade, rewards and advantage ----

LABEL = re.compile(r"^\[agent (\d+): [^\]]*, answer (\d+)/(\d+)\] extracted (.+) \| (correct|wrong) \| "
                   r"reward (-?[\d.]+) \| calibrated (-?[\d.]+) \| advantage ([-+][\d.]+)$")


def mixed_grades(groups):
    """A verdict that differs within groups of the random tiny model's answers: the first token's parity."""
    return torch.tensor([[float(c[0] % 2 == 0) if c else 0.0 for c in g.completion_ids] for g in groups])


def graded_answers(path: Path) -> list[dict]:
    """Every graded label of a transcript file, in order, with the stage it is under."""
    rows, stage = [], None
    for line in path.read_text().splitlines():
        if line.startswith("---- "):
            stage = line[5:]
        elif m := LABEL.match(line):
            rows.append({"stage": stage, "agent": int(m[1]) - 1, "k": int(m[2]), "G": int(m[3]),
                         "extracted": m[4], "correct": m[5] == "correct", "reward": float(m[6]),
                         "calibrated": float(m[7]), "advantage": float(m[8])})
    return rows


@pytest.mark.parametrize("method", ["ilr", "grpo"])
def test_transcripts_show_each_trained_answers_grade_consistent_with_metrics(tmp_path, monkeypatch, capsys, method):
    monkeypatch.setattr(ilr, "grade_groups", mixed_grades)
    ilr.main(["--preset", "tiny", "--no-eval_base", "--eval_limit", "1", "--max_steps", "1", "--method", method,
              "--train_stages", "sharing,fusion", "--output_dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "random 2-layer model" in out and "plumbing" in out          # the tiny model announces itself
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    path = tmp_path / "run" / "transcripts" / "step00001.txt"
    assert path.read_text().startswith('Step 1: the row with "step": 1 of metrics.jsonl')
    rows = graded_answers(path)
    B, G, M = 2, 4, 2                                                     # the tiny preset's
    stages = {"ilr": {"1. Idea Sharing", "3. Idea Fusion"}, "grpo": {"Answer (alone)"}}[method]
    assert {r["stage"] for r in rows} == stages and {r["G"] for r in rows} == {G}
    assert len(rows) == len(stages) * B * M * G                           # every trained answer, once
    assert any(r["correct"] for r in rows) and not all(r["correct"] for r in rows)
    for i in range(M):
        mine = [r for r in rows if r["agent"] == i]
        assert sum(r["correct"] for r in mine) / len(mine) == pytest.approx(metrics[f"agent{i}/accuracy"])
        assert sum(r["reward"] for r in mine) / len(mine) == pytest.approx(metrics[f"agent{i}/reward"], abs=0.006)
        assert sum(r["calibrated"] for r in mine) / len(mine) == pytest.approx(
            metrics[f"agent{i}/calibrated_reward"], abs=0.006)
    for start in range(0, len(rows), G):                                 # one GRPO group: G labels in a row
        group = rows[start:start + G]
        assert [r["k"] for r in group] == list(range(1, G + 1))
        assert abs(sum(r["advantage"] for r in group)) <= 0.005 * G      # advantages of a group sum to 0
        assert all(r["reward"] == (1.0 if r["correct"] else 0.0) for r in group)  # no \boxed{}: no format term
    if method == "grpo":
        assert all(r["calibrated"] == r["reward"] for r in rows)        # no Eq. 5 in the baseline


def test_grade_line_shows_the_extracted_answer_verdict_rewards_and_advantage():
    record = {"kind": "math", "answer": "15", "meta": {"benchmark": "ladder"}}
    assert ilr.grade_line("7 + 8 = 15", record, 1.0, 1.0, 0.75, -0.5) == \
        "extracted '15' | correct | reward 1.00 | calibrated 0.75 | advantage -0.50"
    code = {"kind": "code", "meta": {"entry_point": "f"}}
    assert ilr.grade_line("```python\ndef f():\n    return 1\n```", code, 0.0, 0.1, 0.1, 0.0).startswith(
        "extracted code (2 lines) | wrong | reward 0.10")


# ---- γ's progress bar says what it is doing ----

def test_gammas_progress_bar_names_the_agent_and_the_questions(tmp_path, monkeypatch):
    seen = []

    def fake_generate(model, tokenizer, prompts, **kwargs):
        seen.append(kwargs["desc"])
        return SimpleNamespace(texts=[["no idea"] for _ in prompts])
    monkeypatch.setattr(llm, "generate", fake_generate)
    cfg = ilr.parse_args(["--preset", "tiny", "--difficulty", "level"])[0]
    train, val = ilr.load_training_data(cfg)
    model = torch.nn.Linear(2, 2)
    agents = [SimpleNamespace(model=model, tokenizer=None)] * 2
    monkeypatch.setattr(irt, "_cache_file", lambda *args: None)          # no answer cache: generate every time
    ilr.irt_inputs(cfg, agents, train, val, tmp_path)
    assert seen == [f"γ: agent{i} answers {cfg.num_val} validation questions" for i in range(2)]


# ---- the README's and EXERCISES.md's commands: one way to get the project's python ----

def code_lines(path: Path) -> list[str]:
    """The lines inside the ```bash / ``` blocks of a Markdown file, in order."""
    return [line.strip() for block in re.findall(r"```(?:bash)?\n(.*?)```", path.read_text(), re.S)
            for line in block.splitlines()]


@pytest.mark.parametrize("name", ["README.md", "EXERCISES.md"])
def test_every_python_command_comes_after_the_venv_is_activated(name):
    lines = code_lines(ROOT / name)
    commands = [k for k, line in enumerate(lines) if re.match(r"python3? ", line)]
    activate = [k for k, line in enumerate(lines) if line.startswith("source .venv/bin/activate")]
    assert commands and activate and activate[0] < commands[0], "`source .venv/bin/activate` must come first"
    assert not [line for line in lines if line.startswith(".venv/bin/python")], "one convention: python after activate"


def test_the_readme_has_exactly_two_set_up_commands_and_says_how_to_run_python():
    text = (ROOT / "README.md").read_text()
    first = re.search(r"## Two commands\n\n```bash\n(.*?)```", text, re.S)[1]
    assert [line.split()[:2] for line in first.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert "source .venv/bin/activate" in text.split("## What the demo shows")[0]


def test_makefile_and_readme_agree_on_the_demo_time():
    makefile = re.search(r"about (\d+) minutes", (ROOT / "Makefile").read_text().split("demo: install")[0])[1]
    readme = re.search(r"make demo .*~(\d+) min", (ROOT / "README.md").read_text())[1]
    assert makefile == readme


def test_the_readme_config_table_names_every_setting_the_exercises_use():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    fields = {f.name for f in ilr.fields(ilr.Config)}
    exercises = (ROOT / "EXERCISES.md").read_text()
    used = {flag.replace("-", "_") for flag in re.findall(r"--(?:no-)?([a-z][\w-]*)", exercises)}
    missing = sorted(name for name in used & fields if f"`--{name}" not in table and f"--{name}`" not in table)
    assert not missing, f"README's configuration table lacks {missing}"


def test_exercise_3_prints_its_rewards_per_agent():
    section = (ROOT / "EXERCISES.md").read_text().split("## 3. ", 1)[1].split("\n## ", 1)[0]
    assert "agent0/calibrated_reward" in section and "agent1/calibrated_reward" in section
