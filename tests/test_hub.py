"""The Hugging Face Hub paths, offline, against the fake Hub of tests/fakehub.py (fixture `fake_hub`): every
benchmark through data.load_benchmark's Hub path gives the records the local converters give for the same rows;
MATH-500 is left out of the MATH validation set without unique_id; `data.py download` writes the local layout;
the gpu-small model ids resolve offline with their quirks; and the README's GPU commands run (end to end)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import data
from fakehub import QWEN, QWEN_SYSTEM, SMOL

ROOT = Path(__file__).resolve().parents[1]
KEYS = [*data.LOCAL, "gsm8k:train", "math:train"]  # benchmark, or benchmark:split


def load(key, **kwargs):
    name, _, split = key.partition(":")
    return data.load_benchmark(name, split=split or "test", **kwargs)


def essentials(records):
    """What a benchmark means to the evaluator and the trainer: question, gold answer, kind (+ the code tests)."""
    return [(r["question"], r["answer"], r["kind"], r["meta"].get("tests"), r["meta"].get("setup_code"),
             r["meta"].get("entry_point"), r["meta"].get("answers")) for r in records]


# ----------------------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
def test_hub_path_gives_the_records_of_the_local_file(fake_hub, data_dir, key):
    hub = load(key)  # no data_dir: datasets.load_dataset(id, config, split=...) from the fake Hub's cache
    local = fake_hub.local_records(key, data_dir)
    assert len(hub) == len(fake_hub.rows[key]) >= 3
    assert essentials(hub) == essentials(local)


def test_hub_rows_carry_the_hub_field_names(fake_hub):
    # The premise of the converters' Hub branches: what the fake Hub serves (as the dataset cards list them).
    minerva = data._hub_rows("minerva_math", "test")[0][1]
    assert set(minerva) == {"question", "answer"}
    math = data._hub_rows("math", "test")[0][1]
    assert set(math) == {"problem", "level", "solution", "type"}  # no unique_id
    assert data._hub_rows("olympiadbench", "test")[0][0] == "Hothan/OlympiadBench[0]"


def test_a_benchmark_missing_from_the_offline_cache_fails_in_one_line(fake_hub, monkeypatch):
    monkeypatch.setitem(data.HUB, "aime25", ("math-ai/aime26", None, "test"))  # not in the fake Hub's cache
    with pytest.raises(data.DataError) as error:
        data.load_benchmark("aime25")
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot load 'aime25' from the Hub (math-ai/aime26)")
    assert "--data-dir DIR" in message and "python data.py download --out DIR" in message


def test_minerva_hub_row_gold_is_its_answer_field_and_needs_no_solution():
    convert = data.CONVERTERS["minerva_math"]
    hub = convert({"question": "Image diameter in cm?", "answer": "1.6"}, "hub[0]", 0)
    assert (hub["question"], hub["answer"], hub["id"], hub["meta"]["solution"]) == ("Image diameter in cm?", "1.6",
                                                                                    "0", None)
    local = convert({"problem": "Q", "solution": r"so $s=\boxed{1.6}$ cm", "idx": 7}, "file:1", 0)
    assert (local["answer"], local["id"]) == ("1.6", "7")
    with pytest.raises(data.DataError, match=r"^hub\[3\]: missing field 'answer' or 'solution'$"):
        convert({"question": "Q"}, "hub[3]", 3)


def test_math_hub_rows_have_row_numbers_for_ids_so_math500_is_excluded_by_text(fake_hub):
    import ilr

    hub_math = data.load_benchmark("math", split="test")
    assert [r["id"] for r in hub_math] == ["0", "1", "2", "3", "4"]  # MATH-lighteval: no unique_id
    cfg = ilr.Config(train_data="synthetic", num_train=4, val_data="math", num_val=100, data_dir=None)
    _, val = ilr.load_training_data(cfg)
    math500 = {r["meta"]["solution"] for r in data.load_benchmark("math500")}
    expected = [r["problem"] for r in fake_hub.rows["math"][:3]]  # the two MATH-500 problems are the last rows
    assert [r["question"] for r in val] == expected
    assert not math500 & {r["meta"]["solution"] for r in val}


def test_math_validation_exclusion_also_matches_text_up_to_whitespace(tmp_path, monkeypatch):
    import ilr

    math500 = [{"problem": "What is  $1+1$?\n", "solution": r"\boxed{2}", "answer": "2", "unique_id": "u1"}]
    math = [{"problem": "What is $1+1$?", "solution": r"\boxed{2}", "level": "Level 1", "type": "Algebra"},
            {"problem": "What is $2+2$?", "solution": r"\boxed{4}", "level": "Level 1", "type": "Algebra"}]
    for relative, rows in (("math500/test.jsonl", math500), ("math/test.jsonl", math)):
        (tmp_path / relative).parent.mkdir(parents=True)
        (tmp_path / relative).write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = ilr.Config(train_data="synthetic", num_train=2, val_data="math", num_val=10, data_dir=str(tmp_path))
    assert [r["question"] for r in ilr.load_training_data(cfg)[1]] == ["What is $2+2$?"]


def test_download_writes_the_local_layout_and_reads_back_the_hub_records(fake_hub, tmp_path, capsys):
    assert data.main(["download", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    expected = sorted({relative.format(split=s) for relative in data.LOCAL.values() for s in ("test", "train")})
    assert written == expected  # data.LOCAL's layout, nothing else (no .part- files left)
    assert len(printed) == len(expected) and all(line.startswith("[data] ") for line in printed)
    for key in KEYS:
        assert load(key, data_dir=tmp_path) == load(key), key
    assert isinstance(json.loads((tmp_path / "mbpp/sanitized-mbpp.json").read_text()), list)  # a JSON list


def test_download_command_line_runs_as_a_script(fake_hub, tmp_path):
    out = subprocess.run([sys.executable, "data.py", "download", "--out", str(tmp_path), "--benchmarks",
                          "minerva_math"], cwd=ROOT, env=fake_hub.env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"[data] {tmp_path / 'minerva_math/test.jsonl'}: 3 rows"
    assert data.load_benchmark("minerva_math", data_dir=tmp_path) == data.load_benchmark("minerva_math")


def test_download_refuses_an_unknown_benchmark_in_one_line(tmp_path, capsys):
    assert data.main(["download", "--out", str(tmp_path), "--benchmarks", "gsm8k,gsm9k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'gsm9k'" in err and "choose from gsm8k, math" in err
    assert not any(tmp_path.iterdir())  # checked before anything is fetched or written


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------

def test_gpu_small_model_ids_resolve_offline_with_qwen_quirks(fake_hub):
    from huggingface_hub import scan_cache_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    cached = {(r.repo_id, r.repo_type) for r in scan_cache_dir(fake_hub.home / "hub").repos}
    assert {(QWEN, "model"), (SMOL, "model"), ("openai/gsm8k", "dataset")} <= cached  # huggingface_hub's layout

    model = AutoModelForCausalLM.from_pretrained(QWEN, dtype="auto")
    assert model.config.model_type == "qwen2" and model.model.layers[0].self_attn.q_proj.bias is not None
    assert next(model.parameters()).dtype == torch.bfloat16  # the checkpoint is bf16
    tokenizer = AutoTokenizer.from_pretrained(QWEN)
    assert tokenizer.pad_token is None and tokenizer.eos_token == "<|im_end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "2+3?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n2+3?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    generation = GenerationConfig.from_pretrained(QWEN)
    eos = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert generation.eos_token_id == eos and generation.do_sample
    assert (generation.repetition_penalty, generation.top_k, generation.top_p, generation.temperature) == \
        (1.05, 20, 0.8, 0.7)

    smol = AutoModelForCausalLM.from_pretrained(SMOL, dtype="auto")
    assert smol.config.model_type == "llama" and next(smol.parameters()).dtype == torch.bfloat16
    assert AutoTokenizer.from_pretrained(SMOL).pad_token == "<|im_end|>"


def test_unknown_hub_id_fails_offline(fake_hub):
    from transformers import AutoModelForCausalLM

    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-1.5B-Instruct")  # not in the fake cache: no network


# ----------------------------------------------------------------------------------------------------------
# End to end: the README's GPU commands, verbatim except for size flags, offline against the fake Hub
# ----------------------------------------------------------------------------------------------------------

SHRINK = ["--max_steps", "1", "--num_train", "4", "--num_val", "2", "--questions_per_step", "1",
          "--num_generations", "2", "--max_completion_length", "6", "--peer_token_budget", "8",
          "--micro_batch_size", "4", "--batch_size", "8", "--eval_limit", "1", "--eval_max_new_tokens", "4",
          "--rank_splits", "1"]


def ilr_gpu_small(tmp_path, *extra):
    import ilr

    run = tmp_path / "gpu-small"
    result = ilr.main(["--preset", "gpu-small", *extra, *SHRINK, "--output_dir", str(run)])
    return run, result


def check_gpu_small_run(run, result, training_questions):
    config = json.loads((run / "config.json").read_text())
    assert config["models"] == f"{QWEN},{SMOL}" and config["train_data"] == config["val_data"] == "math"
    assert len(json.loads((run / "irt.json").read_text())["difficulty"]) == training_questions
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((run / "final/agent0/config.json").read_text())["model_type"] == "qwen2"
    assert json.loads((run / "final/agent1/config.json").read_text())["model_type"] == "llama"
    benchmarks = ["gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "aime25", "mbpp"]
    expected = {f"agent{i}/{b}" for i in (0, 1) for b in benchmarks}
    assert set(result["base"]) == set(result["trained"]) == expected
    for i in (0, 1):  # one question per benchmark (--eval_limit 1), read from the source the run was given
        lines = (run / "eval" / f"step1-agent{i}-minerva_math.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["id"] == "0"


def test_readme_gpu_small_with_data_dir(fake_hub, data_dir, tmp_path):
    # .venv/bin/python ilr.py --preset gpu-small --data_dir ../shared/data   (models from the fake Hub)
    run, result = ilr_gpu_small(tmp_path, "--data_dir", str(data_dir))
    check_gpu_small_run(run, result, training_questions=4)  # --num_train 4 of the local MATH train file


def test_readme_gpu_small_from_the_hub(fake_hub, tmp_path):
    # .venv/bin/python ilr.py --preset gpu-small   (models and benchmarks from the fake Hub)
    run, result = ilr_gpu_small(tmp_path)
    check_gpu_small_run(run, result, training_questions=3)  # the fake Hub's MATH train split has 3 rows


def test_readme_evaluate_qwen_on_the_paper_benchmarks_from_the_hub(fake_hub, tmp_path):
    import evaluate

    # .venv/bin/python evaluate.py --model Qwen/Qwen2.5-0.5B-Instruct --benchmarks paper
    result = evaluate.main(["--model", QWEN, "--benchmarks", "paper", "--limit", "1", "--max-new-tokens", "4",
                            "--out", str(tmp_path / "eval"), "--quiet"])
    assert set(result["benchmarks"]) >= {"gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "aime25",
                                         "mbpp"}
    items = {name: s["items"] for name, s in result["benchmarks"].items() if name != "aime"}
    assert set(items.values()) == {1}
    first = json.loads((tmp_path / "eval" / "minerva_math.jsonl").read_text().splitlines()[0])
    assert fake_hub.rows["minerva_math"][0]["problem"] in first["prompt"]  # the question came from the Hub


def test_llm_load_model_takes_the_qwen_id_from_the_hub_cache(fake_hub):
    import llm

    model, tokenizer = llm.load_model(QWEN, device="cpu")
    assert model.config.model_type == "qwen2"
    assert next(model.parameters()).dtype == torch.float32  # the bf16 checkpoint is upcast: fp32 masters on a CPU
    assert tokenizer.pad_token is not None  # Qwen's tokenizer has none here: llm chose one
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in llm.eos_ids(model, tokenizer)


def test_llm_unknown_hub_id_offline_is_one_line(fake_hub):
    import llm

    with pytest.raises(llm.ModelError) as error:
        llm.load_model("Qwen/Qwen2.5-1.5B-Instruct", device="cpu")  # not in the fake cache, and no network
    message = str(error.value)
    assert "\n" not in message and "'Qwen/Qwen2.5-1.5B-Instruct'" in message and "HF_HUB_OFFLINE=1" in message


@pytest.mark.parametrize("preset", ["gpu-8gb", "gpu-16gb", "gpu-24gb", "paper-7b"])
def test_card_presets_run_shortened_against_the_fake_hub(fake_hub, tmp_path, capsys, preset):
    # .venv/bin/python ilr.py --preset PRESET   (issue 21's card presets; here a fake-Hub Qwen in place of the
    # preset's size, and the CPU: 4-bit NF4 bases and fp16 autocast both run there)
    pytest.importorskip("bitsandbytes")
    import ilr

    run = tmp_path / preset
    ilr.main(["--preset", preset, "--models", QWEN, "--device", "cpu", *SHRINK, "--no-eval_base",
              "--eval_benchmarks", "math500", "--output_dir", str(run)])
    config = json.loads((run / "config.json").read_text())
    assert config["use_peft"] and config["models"] == QWEN
    out = capsys.readouterr().out
    assert "warning: --torch_dtype" not in out                    # a bf16 base under adapters is not a bf16 update
    for i in (0, 1):                                              # one shared base, an adapter per agent
        final = run / "final" / f"agent{i}"
        assert json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"] == QWEN
        from safetensors.torch import load_file
        weights = load_file(final / "adapter_model.safetensors")
        assert weights and all(w.dtype == torch.float32 for w in weights.values())   # adapters train in fp32
        assert not (final / "model.safetensors").exists()
