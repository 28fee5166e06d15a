"""adapters.py: one shared frozen base per model, each agent trains only its adapter, the reference is the base
with adapters off, generation with each agent's adapter, small exact checkpoints, loading, merging, QLoRA, 8-bit."""
import json
import sys

import pytest
import torch

import adapters
import grpo
import idea3
import ilr
import llm

FAST = ["--preset", "tiny", "--no-eval_base", "--use_peft"]


def make(**settings):
    return ilr.make_agents(ilr.Config(**({"models": "tiny", "device": "cpu"} | settings)))


def batch_of(tokenizer, seed=0, rows=4):
    """A GRPO batch of `rows` random completions of one prompt, advantages +1 / -1 alternating."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(100, 1000, (6,), generator=g).tolist()
    completions = [torch.randint(100, 1000, (5,), generator=g).tolist() for _ in range(rows)]
    advantages = torch.tensor([1.0, -1.0] * (rows // 2))
    return grpo.pack_batch([prompt] * rows, completions, tokenizer.pad_token_id), advantages


def step(agent, seed=0, **kwargs):
    batch, advantages = batch_of(agent.tokenizer, seed)
    agent.model.train()
    out = grpo.grpo_step(agent.model, agent.optimizer, batch, advantages, agent.ref_model, shared_prefix=False,
                         **kwargs)
    agent.model.eval()
    return out


def snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before: dict, after: dict) -> set:
    return {n for n in before if not torch.equal(before[n], after[n])}


def nudge(view, seed=1, scale=0.5):
    """Give an adapter non-zero B matrices (a fresh adapter is the identity), so it changes the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in view.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


# ---- 1. one base per distinct model, an adapter per agent; the default path untouched ----

def test_agents_of_one_model_share_one_frozen_base_and_each_own_an_adapter(monkeypatch):
    loads = []
    monkeypatch.setattr(ilr, "load_agent_model", lambda name, seed: loads.append(name) or llm.tiny_model(seed=seed))
    a0, a1, a2 = make(models="tiny", num_agents=3, use_peft=True)
    assert loads == ["tiny"]                                                   # one base loaded for three agents
    assert a0.model.peft_model is a1.model.peft_model is a2.model.peft_model
    assert [a.model.adapter for a in (a0, a1, a2)] == ["agent0", "agent1", "agent2"]
    base = a0.model.peft_model.get_base_model()
    assert not any(p.requires_grad for n, p in base.named_parameters() if "lora_" not in n)   # frozen
    loads.clear()
    b0, b1 = make(models="tiny,other", use_peft=True)                          # two models: two bases
    assert loads == ["tiny", "other"] and b0.model.peft_model is not b1.model.peft_model
    assert [b0.model.adapter, b1.model.adapter] == ["agent0", "agent1"]


def test_without_use_peft_every_agent_is_still_a_whole_model_with_fused_adamw_over_all_its_weights():
    agents = make()
    for a in agents:
        assert type(a.model).__name__ == "LlamaForCausalLM" and type(a.optimizer) is torch.optim.AdamW
        assert a.optimizer.defaults["fused"] and a.optimizer.defaults["weight_decay"] == 0.0
        assert [p for g in a.optimizer.param_groups for p in g["params"]] == list(a.model.parameters())
    assert agents[0].model is not agents[1].model


def test_lora_settings_reach_peft_with_trls_defaults_and_all_linear_targets():
    (a0, _) = make(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    config = a0.model.peft_config["agent0"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.0)
    adapted = {n.split(".")[-4] for n, _ in a0.model.named_parameters()}     # ...mlp.up_proj.lora_A.agent0.weight
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # MLP too
    assert config.base_model_name_or_path == "tiny:0"


# ---- 2. each agent trains only its adapter ----

def test_each_optimizer_holds_exactly_its_adapters_weights_selected_by_name():
    a0, a1 = make(use_peft=True)
    for i, a in enumerate((a0, a1)):
        held = {id(p) for g in a.optimizer.param_groups for p in g["params"]}
        mine = {id(p) for n, p in a.model.peft_model.named_parameters() if f".agent{i}." in n}
        assert held == mine and len(mine) == 2 * 7 * 2                        # A and B, 7 layers, 2 blocks


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_step_of_one_agent_changes_its_adapter_only(checkpointing):
    """Agent 1 first: right after get_peft_model its adapter is the inactive one, whose requires_grad PEFT has
    switched off (peft#1303). Then agent 0. Each time: the other adapter and the base stay bit-identical."""
    a0, a1 = make(use_peft=True, gradient_checkpointing=checkpointing, learning_rate=1e-2)
    shared = a0.model.peft_model
    for agent, other in ((a1, "agent0"), (a0, "agent1")):
        before = snapshot(shared)
        stats = step(agent)
        moved = changed(before, snapshot(shared))
        assert stats["grad_norm"] > 0 and moved                                # it trained
        assert all(f".{agent.model.adapter}." in n for n in moved), moved    # only its own adapter
        assert not any(f".{other}." in n for n in moved)


def test_gradient_checkpointing_gives_the_adapter_the_same_gradient():
    grads = []
    for checkpointing in (False, True):
        (a0, _) = make(use_peft=True, gradient_checkpointing=checkpointing, lora_dropout=0.0)
        nudge(a0.model)                                       # B != 0, so A gets a gradient too
        step(a0, max_grad_norm=None)
        grads.append([p.grad.clone() for p in a0.model.parameters()])
    assert all(g is not None and g.abs().sum() > 0 for g in grads[1])
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(*grads))


# ---- 3. the reference: the base, adapters disabled ----

def test_the_reference_is_the_base_with_adapters_disabled_not_a_second_model():
    a0, a1 = make(use_peft=True, beta=0.04)
    assert a0.ref_model.peft_model is a0.model.peft_model                      # nothing loaded twice
    nudge(a0.model), nudge(a1.model, seed=2)                                   # trained adapters
    batch, _ = batch_of(a0.tokenizer)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"])
    base, _ = llm.tiny_model(seed=0)                                           # loaded separately
    with torch.no_grad():
        expected = grpo.per_token_logps(base, *inputs)
        ref = grpo.per_token_logps(a0.ref_model, *inputs)
        policy = grpo.per_token_logps(a0.model, *inputs)
    assert torch.allclose(ref, expected, atol=1e-5)
    assert not torch.allclose(policy, expected, atol=1e-3)                     # the adapter does change the model
    # and after the reference forward the agent's adapter is active and trainable again: a step with beta moves it
    before = snapshot(a0.model.peft_model)
    stats = step(a0, beta=0.04)
    moved = changed(before, snapshot(a0.model.peft_model))
    assert stats["kl"] > 0 and moved and all(".agent0." in n for n in moved)


# ---- 4. generation with each agent's adapter ----

def test_each_agent_generates_with_its_own_adapter():
    a0, a1 = make(use_peft=True)
    prompts = ["What is 2 + 3?", "Name a prime."]
    base, tok = llm.tiny_model(seed=0)
    greedy = lambda model: llm.generate(model, tok, prompts, max_new_tokens=6).completion_ids
    nudge(a1.model, scale=2.0)
    assert greedy(a0.model) == greedy(base)                                    # agent 0's adapter is still zero
    one = greedy(a1.model)
    assert one != greedy(base)
    assert greedy(a0.model) == greedy(base) and greedy(a1.model) == one       # switching back and forth


# Prompts of mixed lengths for two agents: sorted by length, the batched call's chunks mix the agents' rows.
MIXED = [["Hi.", "Name a prime number between ten and twenty, please, and say why it is prime.", "What is 7 * 6?"],
         ["Say hello to the whole class and to the teacher.", "Yes?", "What is 2 + 3? Answer briefly."]]


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts llm.generate calls (with the model each ran on) without changing them."""
    calls = []
    real = llm.generate
    monkeypatch.setattr(llm, "generate", lambda model, *a, **k: calls.append(model) or real(model, *a, **k))
    return calls


def two_adapters(scale=0.5):
    """Two tiny adapter agents on one base with different non-zero adapters, as (model, tokenizer) pairs."""
    a0, a1 = make(use_peft=True)
    nudge(a0.model, seed=1, scale=scale), nudge(a1.model, seed=2, scale=scale)
    return [(a.model, a.tokenizer) for a in (a0, a1)]


def both_paths(monkeypatch, agents, n, temperature, batch_size=2):
    """idea3.generate_stage's [M] completion ids, batched (one call for the base) and one call per agent."""
    ids = {}
    for batched in (True, False):
        monkeypatch.setattr(idea3, "BATCH_ADAPTERS", batched)
        gens = idea3.generate_stage(agents, MIXED, "fusion", n, temperature, 6, 0, batch_size, False)
        ids[batched] = [g.completion_ids for g in gens]                      # [M][B][n]
    return ids[True], ids[False]


def test_adapter_agents_of_one_base_generate_in_one_call_with_the_per_agent_greedy_answers(monkeypatch,
                                                                                           generate_calls):
    agents = two_adapters()
    tok = agents[0][1]
    lengths = [(len(llm.chat_prompt_ids(tok, p)), i) for i in (0, 1) for p in MIXED[i]]
    chunks = [sorted(lengths)[k:k + 2] for k in (0, 2, 4)]                   # batch_size 2, greedy: 2 prompts
    assert any(len({i for _, i in chunk}) == 2 for chunk in chunks)         # a chunk holds both agents' rows
    batched, per_agent = both_paths(monkeypatch, agents, 1, 0.0)
    assert generate_calls == [agents[0][0].peft_model, agents[0][0], agents[1][0]]  # 1 call, then 1 per agent
    assert batched == per_agent
    assert batched[0] != batched[1]                                          # the two adapters do answer apart
    with pytest.raises(ValueError, match="3 prompts but 2 adapter_names"):
        llm.generate(agents[0][0].peft_model, tok, MIXED[0], adapter_names=["agent0", "agent1"])


def test_sampled_copies_of_each_prompt_run_with_its_own_agents_adapter(monkeypatch):
    """n = 3 copies per prompt (the shared prefill, rows repeated by copies) at a temperature so low that sampling
    is the argmax: every copy must be its own agent's greedy answer; agent 1's adapter is huge, so a row run with
    the other adapter (names not repeated by copies, or not cut with the chunk) gives another answer."""
    agents = two_adapters()
    nudge(agents[1][0], seed=3, scale=3.0)
    greedy, _ = both_paths(monkeypatch, agents, 1, 0.0, batch_size=6)
    cold, per_agent = both_paths(monkeypatch, agents, 3, 1e-6, batch_size=6)  # 2 prompts (6 rows) per forward
    assert cold == per_agent == [[row * 3 for row in g] for g in greedy]
    assert all(len(set(map(tuple, greedy[0][b] + greedy[1][b]))) == 2 for b in range(3))
    # one-token prompts: no prefill to share, num_return_sequences makes the copies (the names, repeated by llm)
    peft, tok = agents[0][0].peft_model, agents[0][1]
    eos = llm.eos_ids(peft, tok)
    one = llm._generate_chunk(peft, tok, [[42], [42]], 2, 1e-6, 1.0, 5, eos, ["agent0", "agent1"])   # [B][n]
    alone = [llm._generate_chunk(a, tok, [[42]], 1, 0.0, 1.0, 5, eos)[0][0] for a, _ in agents]
    assert one == [[alone[0]] * 2, [alone[1]] * 2] and alone[0] != alone[1]
    # sampling proper (T = 1): one seed per batched call, so the same step samples the same answers again
    monkeypatch.setattr(idea3, "BATCH_ADAPTERS", True)
    runs = [[g.completion_ids for g in idea3.generate_stage(agents, MIXED, "fusion", 3, 1.0, 6, 5, 6, False)]
            for _ in range(2)]
    assert runs[0] == runs[1] and all(len(g[b]) == 3 for g in runs[0] for b in range(3))


def test_adapters_whose_rows_fill_their_batches_and_agents_on_different_bases_keep_one_call_each(monkeypatch,
                                                                                                 generate_calls):
    agents = two_adapters()
    idea3.generate_stage(agents, MIXED, "fusion", 2, 1.0, 3, 0, 6, False)    # 3 prompts x 2 = one batch each
    assert generate_calls == [agents[0][0], agents[1][0]]
    generate_calls.clear()
    idea3.generate_stage(agents, MIXED, "fusion", 2, 1.0, 3, 0, 12, False)   # both agents' 12 rows: one batch
    assert generate_calls == [agents[0][0].peft_model]
    generate_calls.clear()
    monkeypatch.setattr(ilr, "load_agent_model", lambda name, seed: llm.tiny_model(seed=seed))
    agents = [(a.model, a.tokenizer) for a in make(models="tiny,other", use_peft=True)]
    idea3.generate_stage(agents, MIXED, "fusion", 2, 1.0, 3, 0, 12, False)
    assert generate_calls == [agents[0][0], agents[1][0]]                    # each its own AgentView


# ---- 6. small run directories, exact resume, loading and merging ----

def metric_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_adapter_resume_is_exact_and_checkpoints_hold_only_the_adapters(tmp_path, monkeypatch):
    from test_ilr import SMALL, mixed_rewards, without_times
    monkeypatch.setattr(ilr, "group_rewards", mixed_rewards)
    args = FAST + SMALL + ["--no-shared_prefix", "--lora_dropout", "0.1", "--beta", "0.04"]
    ilr.main(args + ["--max_steps", "3", "--save_steps", "2", "--output_dir", str(tmp_path / "straight")])
    ilr.main(args + ["--max_steps", "2", "--save_steps", "2", "--output_dir", str(tmp_path / "split")])
    ilr.main(["--resume", str(tmp_path / "split"), "--max_steps", "3"])
    straight, split = metric_rows(tmp_path / "straight"), metric_rows(tmp_path / "split")
    assert all(r["grad_norm"] > 0 for r in straight) and without_times(straight) == without_times(split)
    for i in (0, 1):
        a, b = (torch.load(tmp_path / run / "checkpoint" / f"agent{i}.pt", weights_only=False)
                for run in ("straight", "split"))
        assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k])
                                                              for k in a["model"])
        assert all(f".agent{i}." in k for k in a["model"])                     # the adapter only
        assert len(a["optimizer"]["state"]) == len(a["model"])                 # states of the adapter only
    final = tmp_path / "straight" / "final" / "agent1"
    assert json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny:0"
    assert (final / "adapter_model.safetensors").stat().st_size < 1_000_000 and not (final / "config.json").exists()
    # the adapter folder carries the checksums of issue 25, and loading it checks them (one line naming the file)
    assert llm.CHECKSUMS in {p.name for p in final.iterdir()}
    content = bytearray((final / "adapter_model.safetensors").read_bytes())
    content[len(content) // 2] ^= 0x80
    (final / "adapter_model.safetensors").write_bytes(bytes(content))
    with pytest.raises(llm.ModelError, match="adapter_model.safetensors: does not match its checksum"):
        llm.load_model(str(final), device="cpu")


def saved_agent(tmp_path, **settings):
    (a0, a1) = make(use_peft=True, **settings)
    nudge(a1.model, scale=0.3)
    a1.model.save_pretrained(tmp_path / "agent1")
    a1.tokenizer.save_pretrained(tmp_path / "agent1")
    return a1


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_an_adapter_folder_loads_as_its_base_plus_the_adapter_and_merges_into_a_plain_model(tmp_path):
    a1 = saved_agent(tmp_path)
    ids = torch.randint(100, 1000, (2, 7))
    expected = logits(a1.model, ids)
    loaded, _ = llm.load_model(str(tmp_path / "agent1"), device="cpu")           # what evaluate.py --model does
    assert torch.equal(logits(loaded, ids), expected)
    assert not torch.allclose(logits(llm.tiny_model()[0], ids), expected, atol=1e-3)
    adapters.main(["merge", str(tmp_path / "agent1"), str(tmp_path / "merged")])
    merged, _ = llm.load_model(str(tmp_path / "merged"), device="cpu")
    assert type(merged).__name__ == "LlamaForCausalLM"                          # no PEFT left
    assert torch.allclose(logits(merged, ids), expected, atol=1e-5)


def test_evaluate_py_evaluates_an_adapter_folder(tmp_path):
    import evaluate
    saved_agent(tmp_path)
    out = evaluate.main(["--model", str(tmp_path / "agent1"), "--benchmarks", "synthetic", "--limit", "2",
                         "--max-new-tokens", "4", "--device", "cpu", "--out", str(tmp_path / "eval")])
    assert out["benchmarks"]["synthetic"]["items"] == 2


# ---- 5. QLoRA and 8-bit AdamW ----

def test_qlora_base_is_4bit_and_a_step_changes_only_the_adapter():
    bnb = pytest.importorskip("bitsandbytes")
    a0, a1 = make(use_peft=True, load_in_4bit=True, learning_rate=1e-2)
    base = a0.model.peft_model.get_base_model()
    linear = base.model.layers[0].mlp.up_proj.base_layer
    assert isinstance(linear, bnb.nn.Linear4bit) and linear.weight.dtype == torch.uint8
    assert all(p.dtype == torch.float32 for p in a0.model.parameters())          # adapters in fp32
    shared = a0.model.peft_model
    before = {n: p.detach().clone() for n, p in shared.state_dict().items()}   # packed 4-bit weights included
    assert step(a1)["grad_norm"] > 0
    after = shared.state_dict()
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(".agent1." in n for n in moved)


def test_adamw_8bit_keeps_8bit_moments_and_steps():
    bnb = pytest.importorskip("bitsandbytes")
    (a0, _) = make(optim="adamw_8bit", learning_rate=1e-3)
    assert isinstance(a0.optimizer, bnb.optim.AdamW8bit)
    before = snapshot(a0.model)
    assert step(a0)["grad_norm"] > 0 and changed(before, snapshot(a0.model))
    embedding = a0.model.get_input_embeddings().weight                          # [V, 64]: 8-bit states
    assert a0.optimizer.state[embedding]["state1"].dtype == torch.uint8


def test_a_missing_package_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)                      # as if not installed
    with pytest.raises(SystemExit) as e:
        ilr.main(FAST + ["--load_in_4bit", "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "'bitsandbytes'" in err and "\n" not in err
