"""idea3.py: prompts framed by mode, bounded quotes, well-formed transcripts whose token ids decode back to the
text, one generate call per agent per stage, the trainer's groups, and multi-agent inference (Table 4)."""
import json

import pytest

import evaluate
import idea3
import llm

QUESTIONS = ["Tom has 3 apples and buys 4 more. How many apples does he have?",
             "A box holds 12 eggs. How many eggs are in 5 boxes?",
             "What is 15 minus 6?"]
FAST = dict(max_new_tokens=8, analysis_max_new_tokens=6, peer_token_budget=16, seed=0)   # the tiny model babbles


def count_tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts llm.generate calls (and records which model and how many prompts) without changing them."""
    calls = []
    real = llm.generate

    def counting(model, tokenizer, prompts, **kwargs):
        calls.append((model, len(prompts), kwargs.get("n", 1)))
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(llm, "generate", counting)
    return calls


# ---------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------

def test_analysis_prompt_is_framed_by_mode_and_quotes_every_peer():
    peers = ["peer one says 7", "peer two says 8"]
    coop = idea3.analysis_prompt("Q?", "mine says 7", peers, "cooperation")
    comp = idea3.analysis_prompt("Q?", "mine says 7", peers, "competition")
    assert "partners" in coop and "together" in coop and "combined" in coop and "competitor" not in coop
    assert "competitors" in comp and "mistake" in comp and "partner" not in comp
    for prompt in (coop, comp):
        assert "Q?" in prompt and "Your solution:\nmine says 7" in prompt
        assert all(p in prompt for p in peers)
        assert "final answer yet" in prompt          # analysis does not answer


def test_fusion_prompt_holds_the_whole_discussion_and_asks_for_a_boxed_answer():
    p = idea3.fusion_prompt("Q?", "S0", ["S1"], "A0", ["A1"], "cooperation")
    for heading, text in [("Your solution", "S0"), ("Your partner's solution", "S1"),
                          ("Your analysis", "A0"), ("Your partner's analysis", "A1")]:
        assert f"{heading}:\n{text}" in p
    assert "\\boxed{}" in p and "combine" in p
    comp = idea3.fusion_prompt("Q?", "S0", ["S1"], "A0", ["A1"], "competition")
    assert "better than your competitor's work" in comp
    code = idea3.fusion_prompt("Q?", "S0", ["S1"], "A0", ["A1"], "competition", kind="code")
    assert "```python" in code and "\\boxed" not in code


def test_sharing_uses_the_test_time_prompt_and_debate_quotes_the_other_answer():
    record = {"kind": "math", "question": "What is 2+2?"}
    assert idea3.sharing_prompt(record) == evaluate.test_prompt(record)
    p = idea3.debate_prompt("What is 2+2?", "I think 4", ["The other says 5"])
    assert "I think 4" in p and "The other says 5" in p and "\\boxed{}" in p


def test_unknown_mode_and_too_few_agents_are_rejected(tiny):
    with pytest.raises(ValueError, match="unknown mode"):
        idea3.run_idea3([tiny, tiny], ["Q"], ["friendship"], num_generations=1, **FAST)
    with pytest.raises(ValueError, match="at least 2 agents"):
        idea3.run_idea3([tiny], ["Q"], ["cooperation"], num_generations=1, **FAST)
    with pytest.raises(ValueError, match="temperature > 0"):
        idea3.run_idea3([tiny, tiny], ["Q"], ["cooperation"], num_generations=2, temperature=0.0, **FAST)


# ---------------------------------------------------------------------------------------------------------
# Token budget
# ---------------------------------------------------------------------------------------------------------

def test_quoted_text_is_cut_to_the_budget_keeping_head_and_tail(tiny):
    _, tok = tiny
    text = " ".join(f"step {i} adds {i} apples." for i in range(60)) + " The answer is \\boxed{42}."
    assert count_tokens(tok, text) > 100
    cut = idea3.cut_text(text, tok, 40)
    head, tail = cut.split(idea3.CUT_MARK)
    assert text.startswith(head) and text.endswith(tail) and tail.endswith("\\boxed{42}.")
    assert (count_tokens(tok, head), count_tokens(tok, tail)) == (30, 10)   # 3/4 head, 1/4 tail
    assert idea3.cut_text("short text", tok, 40) == "short text"             # fits: unchanged
    assert idea3.cut_text(text, tok, None) == text                           # None: no cut


def test_peer_texts_in_prompts_are_cut_with_each_readers_tokenizer(tiny, monkeypatch):
    """Long solutions are quoted cut to the budget: the prompt stays bounded whatever the peers wrote."""
    long_solution = "Let me think. " * 200
    result = idea3.run_idea3([tiny, tiny], QUESTIONS[:1], ["competition"], num_generations=1, temperature=0.0,
                             sharing_texts=[[long_solution], [long_solution]], train_stages=(),
                             **FAST | {"peer_token_budget": 20})
    assert result.stats["idea3/analysis_max_prompt_tokens"] < 200          # not the ~600 tokens of the text
    assert result.stats["idea3/fusion_max_prompt_tokens"] < 300


# ---------------------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_agents", [2, 3])
def test_run_gives_well_formed_transcripts_and_ids_that_decode_to_them(tiny, num_agents):
    model, tok = tiny
    G, B = 2, 2
    agents = [tiny] * num_agents
    modes = ["cooperation", "competition"]
    result = idea3.run_idea3(agents, QUESTIONS[:B], modes, num_generations=G, temperature=1.0, **FAST)
    assert len(result.transcripts) == B
    for b, t in enumerate(result.transcripts):
        assert t["question"] == QUESTIONS[b] and t["mode"] == modes[b]
        assert len(t["sharing"]) == len(t["analysis"]) == len(t["fusion"]) == num_agents
        assert all(isinstance(x, str) for x in t["sharing"] + t["analysis"])
        assert all(len(answers) == G for answers in t["fusion"])
        assert idea3.format_transcript(t).count("[agent ") == num_agents * (2 + G)
    # each (stage, agent) call has its own seed: copies of one model do not say the same thing
    assert len(set(result.transcripts[0]["sharing"])) == num_agents
    samples = result.samples["fusion"]                                       # [M][B][G]
    assert set(result.samples) == {"fusion"} and len(samples) == num_agents
    role = {"cooperation": "partner", "competition": "competitor"}
    for i in range(num_agents):
        assert len(samples[i]) == B
        for b, t in enumerate(result.transcripts):
            assert len(samples[i][b]) == G
            for k, s in enumerate(samples[i][b]):
                prompt = tok.decode(s.prompt_ids)
                assert QUESTIONS[b] in prompt and role[t["mode"]] in prompt
                for j in range(num_agents):                                  # every solution and analysis, cut
                    assert idea3.cut_text(t["sharing"][j], tok, FAST["peer_token_budget"]).strip() in prompt
                    assert idea3.cut_text(t["analysis"][j], tok, FAST["peer_token_budget"]).strip() in prompt
                assert s.prompt_ids == llm.chat_prompt_ids(tok, prompt.split("<|im_start|>user\n")[1]
                                                           .split("<|im_end|>")[0])
                assert tok.decode(s.completion_ids, skip_special_tokens=True) == s.text == t["fusion"][i][k]


def test_one_generate_call_per_agent_per_stage_whatever_the_batch(tiny, generate_calls):
    for B in (1, 3):
        generate_calls.clear()
        idea3.run_idea3([tiny] * 3, QUESTIONS[:B], ["cooperation"] * B, num_generations=2, temperature=1.0,
                        **FAST | dict(max_new_tokens=2, analysis_max_new_tokens=2))
        assert len(generate_calls) == 3 * 3                                  # M agents x 3 stages
        assert all(num_prompts == B for _, num_prompts, _ in generate_calls)
        assert [n for _, _, n in generate_calls] == [1] * 3 + [1] * 3 + [2] * 3   # sharing, analysis, fusion(G)


def test_training_the_sharing_stage_returns_its_own_groups(tiny):
    model, tok = tiny
    G = 3
    result = idea3.run_idea3([tiny, tiny], QUESTIONS[:2], ["cooperation", "competition"], num_generations=G,
                             temperature=1.0, train_stages=("sharing", "fusion"), **FAST)
    assert set(result.samples) == {"sharing", "fusion"}
    for i in range(2):
        for b in range(2):
            sharing = result.samples["sharing"][i][b]
            assert len(sharing) == G
            assert sharing[0].text == result.transcripts[b]["sharing"][i]    # the first sample is the one shown
            assert tok.decode(sharing[0].prompt_ids).count(QUESTIONS[b]) == 1
            assert sharing[0].prompt_ids == llm.chat_prompt_ids(tok, evaluate.test_prompt(
                idea3.as_record(QUESTIONS[b])))                              # the test-time prompt
    prompts, completions = idea3.agent_batch(result, "sharing", 1)
    assert len(prompts) == len(completions) == 2 * G
    assert completions[G] == result.samples["sharing"][1][1][0].completion_ids   # b-major rows
    records = [idea3.as_record(q, b) | {"answer": "7"} for b, q in enumerate(QUESTIONS[:2])]
    rewards = idea3.stage_rewards(result, records, "fusion", reward_fn=lambda text, record: float(len(text) > 5))
    assert tuple(rewards.shape) == (2, 2, G)                                 # [B, M, G]


# ---------------------------------------------------------------------------------------------------------
# Multi-agent inference (Table 4) and the command line
# ---------------------------------------------------------------------------------------------------------

def test_multi_agent_answers_gives_one_answer_per_agent_per_record_in_every_mode(tiny, generate_calls):
    records = [idea3.as_record(q, b) for b, q in enumerate(QUESTIONS[:2])]
    agents = [tiny, llm.tiny_model(seed=1)]
    first = None
    for mode in idea3.INFERENCE_MODES:
        out = idea3.multi_agent_answers(agents, records, mode, max_new_tokens=8, analysis_max_new_tokens=8,
                                        peer_token_budget=16, first_answers=first)
        assert len(out.answers) == 2 and all(len(row) == 2 for row in out.answers)
        assert all(isinstance(a, str) for row in out.answers for a in row)
        assert len(out.transcripts) == 2 and idea3.format_transcript(out.transcripts[0])
        first = out.first_answers
    assert len(generate_calls) == 2 + 2 + 2 * 2                              # alone, debate, analysis + fusion


def test_debate_prompt_contains_the_other_agents_answer(tiny, monkeypatch):
    """The prompts debate_round hands to llm.generate: agent i's own answer as its own, the other's as the peer."""
    seen = []
    real = llm.generate

    def recording(model, tokenizer, prompts, **kwargs):
        seen.append(list(prompts))
        return real(model, tokenizer, prompts, **kwargs)
    monkeypatch.setattr(llm, "generate", recording)
    records = [idea3.as_record(QUESTIONS[0])]
    first = [["Agent one thinks the answer is 7."], ["Agent two thinks the answer is 8."]]
    idea3.multi_agent_answers([tiny, tiny], records, "debate", max_new_tokens=4, first_answers=first)
    assert len(seen) == 2 and all(len(p) == 1 for p in seen)               # one call per agent, one prompt each
    for i, own, other in [(0, first[0][0], first[1][0]), (1, first[1][0], first[0][0])]:
        prompt = seen[i][0]
        assert f"Your previous solution:\n{own}" in prompt and f"Other agent's solution:\n{other}" in prompt
        assert prompt.count(own) == 1 and prompt.count(other) == 1          # nobody quotes itself as its peer
        assert QUESTIONS[0] in prompt


def test_copies_of_one_model_decoding_greedily_are_generated_once(tiny, generate_calls):
    out = idea3.multi_agent_answers([tiny, tiny], QUESTIONS[:2], "idea3", max_new_tokens=4,
                                    analysis_max_new_tokens=4)
    assert len(generate_calls) == 3                                          # alone, analysis, fusion: once each
    assert out.answers[0] == out.answers[1]


def test_compare_command_prints_a_table_and_writes_results(tmp_path, capsys):
    out = tmp_path / "compare.json"
    result = idea3.main(["compare", "--models", "tiny,tiny", "--benchmark", "synthetic", "--limit", "2",
                         "--max-new-tokens", "6", "--analysis-max-new-tokens", "6", "--peer-token-budget", "16",
                         "--temperature", "0.7", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "single" in printed and "debate" in printed and "idea3 (cooperation)" in printed
    assert set(result["accuracy"]) == {"single", "debate", "idea3 (cooperation)"}
    assert all(len(acc) == 2 and all(0 <= a <= 100 for a in acc) for acc in result["accuracy"].values())
    assert json.loads(out.read_text())["items"] == 2


def test_show_command_prints_one_transcript_per_mode(capsys):
    transcripts = idea3.main(["show", "--models", "tiny,tiny", "--benchmark", "synthetic", "--max-new-tokens", "4",
                              "--analysis-max-new-tokens", "4", "--temperature", "0.7"])
    printed = capsys.readouterr().out
    assert [t["mode"] for t in transcripts] == ["cooperation", "competition"]
    assert printed.count("---- 3. Idea Fusion") == 2 and "gold answer" in printed


def test_eval_command_scores_each_model_alone_and_together_per_benchmark(tmp_path):
    """`idea3.py eval --mode debate --model a,b` (evaluate.py's flags): Table 4 through compare, per benchmark."""
    folder = tmp_path / "data" / "gsm8k"
    folder.mkdir(parents=True)
    folder.joinpath("test.jsonl").write_text(
        "".join(json.dumps({"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"}) + "\n" for i in range(2)))
    result = idea3.main(["eval", "--model", "tiny,tiny", "--mode", "debate", "--benchmarks", "gsm8k", "--data-dir",
                         str(tmp_path / "data"), "--max-new-tokens", "4", "--quiet", "--out", str(tmp_path / "out")])
    accuracy = result["gsm8k"]["accuracy"]
    assert set(accuracy) == {"single", "debate"} and all(len(v) == 2 for v in accuracy.values())
    assert result["gsm8k"]["items"] == 2
    assert json.loads((tmp_path / "out" / "gsm8k-debate.json").read_text())["accuracy"] == accuracy


@pytest.mark.parametrize("args,message", [
    (["--model", "tiny", "--mode", "idea3"], "--mode idea3 needs --model with at least two comma-separated names"),
    (["--model", "tiny,tiny", "--mode", "vote"], "--mode must be debate or idea3 (got 'vote')"),
    (["--model", "tiny,tiny", "--benchmarks", "gsm9k"], "--benchmarks: unknown benchmark 'gsm9k'"),
    (["--model", "tiny,tiny", "--data-dir", "{tmp}/nowhere"], "--data-dir {tmp}/nowhere: no such directory"),
    (["--model", "tiny,tiny", "--limit", "0"], "--limit must be >= 1 (leave it out for all), got 0"),
])
def test_eval_command_bad_input_is_one_line_before_any_model_loads(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(llm, "load_for_cli", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as exit_:
        idea3.main(["eval"] + [a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err == f"idea3.py eval: error: {message.replace('{tmp}', str(tmp_path))}"
