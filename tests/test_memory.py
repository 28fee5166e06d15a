"""memory.py: the plan counts the published parameters of the real models from their configs alone (a cache of
config.json files, tests/fakehub.py's REAL_CONFIGS), `ilr.py --dry_run` prints a plan for every preset offline and
writes nothing, each card preset fits its card, and the plan's training peak is within 20 % of the peak of live
tensor bytes measured on a real GRPO step (tiny model here; the embedded SmolLM2-135M in the slow tests)."""
import pytest
import torch

import ilr
import llm
import memory
from fakehub import PUBLISHED_PARAMS, QWEN, build_configs, point_hub_at

# Card presets and the card (memory.CARDS label) each is made for.
CARD_PRESETS = {"gpu-8gb": "8 GB", "gpu-16gb": "16 GB (T4: 15 GiB)", "gpu-24gb": "24 GB", "paper-7b": "24 GB"}


def plan_of(settings: dict, **extra) -> memory.Plan:
    cfg = ilr.Config(**(settings | extra))
    return memory.plan(cfg, ilr.model_names(cfg))


@pytest.fixture(scope="module")
def config_hub(tmp_path_factory):
    """The Hub, offline, serving only the real config.json of each REAL_CONFIGS id (no weights). Module-wide; it
    puts back whatever Hub the session pointed at before (the fake Hub of tiny weights, if a test built it)."""
    home = tmp_path_factory.mktemp("config-hub")
    build_configs(home)
    patch = pytest.MonkeyPatch()
    point_hub_at(patch, home)
    try:
        yield home
    finally:
        patch.undo()


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_planned_parameter_counts_equal_the_published_ones(config_hub, name):
    # Built on the meta device from config.json alone; the Hub page's "Model size" is rounded to 3 digits.
    params = memory.model_shape(name).params
    assert abs(params - PUBLISHED_PARAMS[name]) <= 0.005 * PUBLISHED_PARAMS[name], (name, params)


def test_exact_counts_of_the_papers_models(config_hub):
    assert memory.model_shape("Qwen/Qwen2.5-7B-Instruct").params == 7_615_616_512
    assert memory.model_shape("meta-llama/Llama-3.1-8B-Instruct").params == 8_030_261_248
    qwen = memory.model_shape(QWEN)             # tied embeddings: counted once
    assert qwen.params == 494_032_768 and qwen.vocab == 151_936


def test_lora_counts_r_times_in_plus_out_of_every_block_linear_not_the_head(config_hub):
    s = memory.model_shape("meta-llama/Llama-3.1-8B-Instruct")
    per_layer = (4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 2 + (14336 + 4096)   # q,o k,v gate,up down
    assert s.lora_per_rank == 32 * per_layer                                  # no lm_head (4096 + 128256)
    assert memory.model_shape("meta-llama/Llama-3.1-8B-Instruct", target_modules="q_proj,v_proj").lora_per_rank \
        == 32 * ((4096 + 4096) + (4096 + 1024))


@pytest.mark.parametrize("preset", sorted(ilr.PRESETS))
def test_every_preset_dry_run_prints_a_plan_offline_and_writes_nothing(config_hub, preset, tmp_path, capsys):
    run = tmp_path / "run"
    result = ilr.main(["--preset", preset, "--dry_run", "--output_dir", str(run)])
    out = capsys.readouterr().out
    assert "peak per phase:" in out and "fits (peak x 1.1 + 0.5 GiB CUDA context): 8 GB" in out
    assert set(result["plan"]["phases"]) == {"load", "generate", "train"}
    assert not run.exists()                                                   # no run directory, no lock


def test_each_card_preset_fits_its_card_and_not_half_of_it(config_hub):
    assert set(CARD_PRESETS) <= set(ilr.PRESETS)
    for preset, card in CARD_PRESETS.items():
        p = plan_of(ilr.PRESETS[preset])
        assert memory.fits(p.peak)[card], (preset, p.phases)
        assert p.peak > 0.3 * memory.CARDS[card] * memory.GIB, (preset, "uses a third of its card: raise a setting")


def test_papers_pair_shares_one_4bit_base(config_hub):
    p = plan_of(ilr.PRESETS["paper-7b"])
    parts = {label: value for label, value, _ in p.parts}
    one_nf4_base = memory.weight_bytes(memory.model_shape("Qwen/Qwen2.5-7B-Instruct"), 2, True)
    assert parts["weights"] == one_nf4_base and parts["reference"] == 0
    assert parts["gradients"] == 4 * 2 * 16 * memory.model_shape("Qwen/Qwen2.5-7B-Instruct").lora_per_rank


def test_a_hub_id_without_a_config_offline_fails_in_one_line(config_hub, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        ilr.main(["--models", "Qwen/Qwen9-1B-Instruct", "--dry_run", "--output_dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert err.startswith("ilr.py: error: cannot load 'Qwen/Qwen9-1B-Instruct' from the Hugging Face Hub: offline")


def test_adapters_shrink_what_the_plan_keeps_and_beta_adds_a_reference_only_without_them():
    full = plan_of(ilr.PRESETS["tiny"], beta=0.04)
    peft = plan_of(ilr.PRESETS["tiny"], beta=0.04, use_peft=True)
    parts = lambda p: {label: value for label, value, _ in p.parts}
    assert parts(full)["reference"] == parts(full)["weights"]                  # two agents, two references
    assert parts(peft)["reference"] == 0 and parts(peft)["weights"] == parts(full)["weights"] / 2   # one base
    assert parts(peft)["optimizer"] < parts(full)["optimizer"] / 10


# ----------------------------------------------------------------------------------------------------------
# The plan against measured peaks (LiveBytes: every live tensor's storage, counted once)
# ----------------------------------------------------------------------------------------------------------

def validation_config(name: str, **extra) -> ilr.Config:
    """One agent's GRPO update at the demo's sizes (B 2, G 8, 32 tokens, micro-batch 8: two micro-batches), fp32."""
    return ilr.Config(models=name, method="grpo", num_agents=1, device="cpu", questions_per_step=2,
                      num_generations=8, micro_batch_size=8, max_completion_length=32, temperature=0.7, **extra)


def planned_and_measured(name: str, **extra) -> tuple[float, float]:
    cfg = validation_config(name, **extra)
    model, _ = ilr.load_agent_model(name, 0)
    if cfg.use_peft:                              # as the check: one adapter, all linear layers
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout, target_modules="all-linear"))
    return memory.plan(cfg, ilr.model_names(cfg)).phases["train"], memory.measure_train_peak(cfg, model)


@pytest.mark.parametrize("extra", [{}, {"use_peft": True}], ids=["full", "adapters"])
def test_planned_training_peak_is_within_20_percent_of_the_measured_one_tiny(extra):
    planned, measured = planned_and_measured("tiny", **extra)
    assert abs(planned - measured) <= 0.2 * measured, (planned, measured)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"gradient_checkpointing": True}, {"use_peft": True}],
                         ids=["full", "checkpointing", "adapters"])
def test_planned_training_peak_is_within_20_percent_of_the_measured_one_embedded(extra):
    planned, measured = planned_and_measured(llm.EMBEDDED, **extra)
    assert abs(planned - measured) <= 0.2 * measured, (planned, measured)


def test_planned_question_length_covers_95_percent_of_math_prompts(data_dir):
    import data
    import evaluate
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llm._embedded_dir())
    lengths = sorted(len(llm.chat_prompt_ids(tokenizer, evaluate.test_prompt(r)))
                     for r in data.load_benchmark("math", data_dir, split="test"))
    assert lengths[int(0.95 * len(lengths))] <= memory.QUESTION_TOKENS < lengths[int(0.99 * len(lengths))]


def test_live_bytes_counts_a_storage_once_and_frees_it():
    x = torch.zeros(256)
    with memory.LiveBytes() as live:
        y = x + 1                                 # 1 KiB
        view = y[:10]                             # a view: same storage, not counted again
        del y                                     # the view keeps the storage alive
        assert live.now == 1024
        del view
    assert (live.now, live.peak) == (0, 1024)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(memory.ACTIVATION_BYTES))
def test_activation_coefficients_are_the_measured_ones(key):
    assert memory.measure_activation_bytes(*key) == pytest.approx(memory.ACTIVATION_BYTES[key])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "half"])
def test_logit_bytes_are_the_measured_ones(precision):
    assert memory.measure_logit_bytes(precision) == pytest.approx(
        (memory.LOGIT_BYTES[precision], memory.ROW_LOGIT_BYTES[precision]), abs=0.05)
