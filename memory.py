"""
memory.py — the GPU memory plan of an ILR run, from the models' configs alone (issue 21, item 7).

    python ilr.py --preset gpu-small --dry_run          # the plan of a run, per phase and card size; loads nothing
    python ilr.py --preset paper-7b --dry_run --batch_size 32      # any flag changes the plan as it changes the run
    .venv/bin/python -m pytest tests/test_memory.py -q  # parameter counts, the plan vs measured peaks (tiny model)
    .venv/bin/python bench/memory_check.py              # the plan vs measured peaks, embedded SmolLM2-135M (CPU)

Where it sits: `ilr.py --dry_run` calls `dry_run(cfg, model_names)` (plan + format_plan); it imports llm and
grpo, never ilr. It reads
each model's config (the Hub's config.json, a few KB; the embedded model's converted cache; llm.tiny_model's),
builds the model on PyTorch's meta device (shapes, no storage) and counts what every phase of a run keeps:

    load      weights: each agent's model, or ONE base per distinct model with --use_peft, and the references
    generate  + gradients and AdamW states (kept from the previous step) + the KV cache of one generation batch
              + its prefill or one decoding step's logits (the Idea3 stages and the evaluation; the largest)
    train     + what autograd keeps for one micro-batch's backward: each layer's activations (or, with gradient
              checkpointing, each layer's input and one layer recomputed) and the logits' backward

The peak of a phase is the sum of what is alive together at its worst moment. The bytes that autograd keeps per
token were MEASURED (module constants below, `measure_activation_bytes` re-measures them and a test pins them);
everything else is counted from the configs. bench/memory_check.py compares the plan with the peak of live tensor
bytes of a real GRPO step (`LiveBytes`), full fine-tuning and adapters (docs/RESULTS.md, "Memory plan").

Choices (ours; each is one constant or one line):
1. Mixed precision, as on a GPU (llm.pick_precision): activations, the KV cache and autocast's weight copies in
   2 B (bf16 / fp16 alike); fp32 when --device cpu or --no-bf16 --no-fp16. The KV cache is planned with K and V
   both in the autocast dtype (issue 26, item 3).
2. 4-bit (QLoRA): the linear layers of the blocks in NF4, 0.5 B per weight + one fp32 absmax per 64 weights
   (bitsandbytes' blocksize, no double quantisation: TRL's default); embeddings, norms and lm_head stay in
   --torch_dtype (transformers does not quantise the output layer).
3. Adapters (--use_peft): r (in + out) parameters per targeted linear, per agent, in fp32 (PEFT upcasts adapters
   on a half-precision base); gradients 4 B and AdamW states 8 B (2 B with adamw_8bit) per trained parameter.
4. Prompt lengths from Idea3's bound (idea3.py header, choice 7): a Fusion prompt holds the question and 2 M
   quoted texts of at most peer_token_budget (+ 5) tokens each, plus PROMPT_OVERHEAD tokens of instructions and
   chat template; a question is planned at QUESTION_TOKENS.
5. A card fits when planned peak x (1 + FRAGMENTATION) + CUDA_CONTEXT <= its memory (GiB, as nvidia-smi shows).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GB = 10**9          # the plan prints GB (10^9 B), as card makers label cards
GIB = 2**30         # what a card holds: an "8 GB" card has 8 GiB (nvidia-smi: 8192 MiB)
# Cards users have, by label -> GiB usable. The T4 (Colab) shows 15,360 MiB, not 16 GiB.
CARDS = {"8 GB": 8.0, "12 GB": 12.0, "16 GB (T4: 15 GiB)": 15.0, "24 GB": 24.0, "80 GB": 80.0}
CUDA_CONTEXT = 0.5 * GIB     # the CUDA context and kernels, outside PyTorch's allocator (~0.3-0.5 GiB per process)
FRAGMENTATION = 0.10         # the caching allocator's rounding and fragmentation: planned peak + 10 %

# Idea3 prompt lengths (choice 4). QUESTION_TOKENS: a MATH test prompt (evaluate.test_prompt, chat template
# included) is at most 293 tokens for 95 % of the 5,000 problems (SmolLM2's tokenizer; median 103, 99 % 510,
# longest 1,575): tests/test_memory.py measures it. A batch of longer ones needs more: the plan is for the usual case.
QUESTION_TOKENS = 300
PROMPT_OVERHEAD = 64         # Analysis/Fusion intro, headings and task (idea3.PROMPTS), beyond the quoted texts

# Bytes autograd keeps per token and decoder layer for the backward, MEASURED on Llama layers of several shapes
# (`measure_activation_bytes(*key)` for each key; tests/test_memory.py re-measures them; unchanged when re-measured
# on 2026-12-05 after selective_log_softmax became an autograd Function): coefficients of
# (hidden, intermediate, q dim = heads x head_dim, kv dim = kv_heads x head_dim, LoRA rank), plus 4 B per head
# (the attention's log-sum-exp). Keys: precision ("fp32" | "half") x adapters x LoRA dropout > 0.
ACTIVATION_BYTES = {
    ("fp32", False, False): (24, 16, 8, 8, 0),
    ("half", False, False): (26, 8, 4, 4, 0),
    ("fp32", True, False): (16, 16, 8, 8, 28),
    ("fp32", True, True): (48, 20, 16, 8, 28),
    ("half", True, False): (18.875, 8.375, 6.25, 4.25, 46),
    ("half", True, True): (38.875, 12.375, 10.25, 4.25, 46),
}
CHECKPOINT_BYTES = 4         # per hidden unit, token and layer with gradient checkpointing: the fp32 layer input
# Peak bytes of the logits' part of the update's backward (grpo.selective_log_softmax's): per logit of the
# micro-batch's [rows, T + 1, V] logits (the logits it saves and their gradient: 4 + 4 B in fp32, 2 + 2 B in bf16)
# plus ROW_LOGIT_BYTES per logit of ONE row (its backward's fp32 working set, [T, V] tensors, one row at a time).
# MEASURED by `measure_logit_bytes` (2026-12-05: fp32 (7.92, 16.33), half (3.96, 16.16), from 4 and 8 rows x 48
# and 4 x 96 tokens: .venv/bin/python -c "import memory; print(memory.measure_logit_bytes('fp32'),
# memory.measure_logit_bytes('half'))"; tests pin them). Until selective_log_softmax's backward went row by row,
# one figure per logit measured at 4 rows x 48 tokens was planned: 15.7 (fp32) and 9.5 (half); now it is 11.84
# and 8.53 there, 9.88 and 6.24 at 8 rows: the row's working set is why it depends on the micro-batch.
LOGIT_BYTES = {"fp32": 7.9, "half": 4.0}
ROW_LOGIT_BYTES = {"fp32": 16.3, "half": 16.2}
NF4_BYTES = 0.5 + 4 / 64     # choice 2
OPTIMIZER_BYTES = {"adamw_torch": 8, "adamw_8bit": 2}   # AdamW's two moments per trained parameter (choice 3)


# ----------------------------------------------------------------------------------------------------------
# 1) A model's shape, from its config, on the meta device
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Shape:
    """What the plan needs of one model; parameters counted exactly from the meta-device model."""
    name: str
    params: int              # every parameter (tied embeddings counted once)
    block_linear: int        # weights + biases of the nn.Linear layers of the blocks (quantised by 4-bit)
    lora_per_rank: int       # sum of (in + out) over the targeted linears: an adapter of rank r has r x this
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


def model_config(name: str):
    """The transformers config of an ilr model name: 'tiny', the embedded model, a directory or a Hub id (only its
    config.json is fetched). A Hub id that cannot be fetched raises llm.ModelError (one line)."""
    import llm
    from transformers import AutoConfig

    if name == "tiny":
        return llm.tiny_model()[0].config                     # random 2-layer model: nothing to download
    source = llm.model_source(name)
    path = llm._embedded_dir() if source == "embedded" else name
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise llm._hub_error(name, e) from None


def model_shape(name: str, config=None, target_modules: str = "all-linear") -> Shape:
    """Count the parameters of `name`'s model built on the meta device (no memory, no weights).

    >>> s = model_shape("tiny")
    >>> s.layers, s.hidden, s.params < 4_000_000, s.lora_per_rank == 2 * (4 * 64 + 2 * (64 + 32) + 3 * (64 + 128))
    (2, 64, True, True)
    """
    from transformers import AutoModelForCausalLM

    config = config or model_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())               # parameters() yields a tied weight once
    targets = None if target_modules == "all-linear" else {t.strip() for t in target_modules.split(",")}
    block_linear = lora = 0
    for module_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is model.get_output_embeddings():
            continue                                                   # lm_head: neither quantised nor adapted
        block_linear += sum(p.numel() for p in module.parameters())
        if targets is None or module_name.split(".")[-1] in targets:
            lora += module.in_features + module.out_features           # A: r x in, B: out x r
    heads = config.num_attention_heads
    return Shape(name, params, block_linear, lora, config.num_hidden_layers, config.hidden_size,
                 config.intermediate_size, heads, getattr(config, "num_key_value_heads", None) or heads,
                 getattr(config, "head_dim", None) or config.hidden_size // heads, config.vocab_size)


# ----------------------------------------------------------------------------------------------------------
# 2) Pure arithmetic: bytes of each thing a run keeps
# ----------------------------------------------------------------------------------------------------------

def weight_bytes(s: Shape, dtype_bytes: int, load_in_4bit: bool) -> float:
    """One copy of the model's weights: every parameter in `dtype_bytes`, or the blocks' linears in NF4.

    >>> s = Shape("x", params=100, block_linear=64, lora_per_rank=0, layers=1, hidden=1, intermediate=1, heads=1,
    ...           kv_heads=1, head_dim=1, vocab=1)
    >>> weight_bytes(s, 4, False), weight_bytes(s, 4, True)      # 36 x 4 B + 64 x (0.5 + 4/64) B
    (400, 180.0)
    """
    if not load_in_4bit:
        return s.params * dtype_bytes
    return (s.params - s.block_linear) * dtype_bytes + s.block_linear * NF4_BYTES


def layer_token_bytes(s: Shape, precision: str, adapters: bool, dropout: bool, rank: int) -> float:
    """Bytes autograd keeps per token in ONE decoder layer (the measured coefficients, ACTIVATION_BYTES)."""
    h, i, q, kv, r = ACTIVATION_BYTES[(precision, adapters, adapters and dropout)]   # dropout: on adapters only
    return (h * s.hidden + i * s.intermediate + q * s.heads * s.head_dim + kv * s.kv_heads * s.head_dim
            + r * (rank if adapters else 0) + 4 * s.heads)


def kv_cache_bytes(s: Shape, rows: int, tokens: int, dtype_bytes: int) -> int:
    """The generation KV cache: rows x tokens x layers x (K and V) x kv_heads x head_dim x bytes.

    >>> kv_cache_bytes(Shape("q", 0, 0, 0, 24, 896, 4864, 14, 2, 64, 151936), 1, 1, 2)  # Qwen2.5-0.5B, bf16
    12288
    """
    return rows * tokens * s.layers * 2 * s.kv_heads * s.head_dim * dtype_bytes


def prompt_tokens(cfg) -> dict[str, int]:
    """Planned prompt length of each Idea3 stage (choice 4); --method grpo: the question alone.

    >>> from types import SimpleNamespace as C
    >>> prompt_tokens(C(method="ilr", num_agents=2, peer_token_budget=128))   # 300 + 64 + 2 (or 4) x 133
    {'sharing': 300, 'analysis': 630, 'fusion': 896}
    """
    if cfg.method == "grpo":
        return {"sharing": QUESTION_TOKENS}
    quoted = cfg.peer_token_budget + 5                                     # idea3.cut_text's bound per text
    return {"sharing": QUESTION_TOKENS,
            "analysis": QUESTION_TOKENS + PROMPT_OVERHEAD + cfg.num_agents * quoted,      # M solutions
            "fusion": QUESTION_TOKENS + PROMPT_OVERHEAD + 2 * cfg.num_agents * quoted}    # + M analyses


def fits(peak: float) -> dict[str, bool]:
    """Which cards hold `peak` bytes with the margin of choice 5.

    >>> fits(6 * GIB)["8 GB"], fits(7 * GIB)["8 GB"]      # 6 x 1.1 + 0.5 = 7.1 <= 8; 7 x 1.1 + 0.5 = 8.2 > 8
    (True, False)
    """
    return {card: peak * (1 + FRAGMENTATION) + CUDA_CONTEXT <= gib * GIB for card, gib in CARDS.items()}


# ----------------------------------------------------------------------------------------------------------
# 3) The plan of a run: what each phase keeps, from an ilr.Config
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """The plan: one line per component (label, bytes, how it was counted) and the peak of each phase."""
    summary: str                                  # models, adapters, precision
    parts: list[tuple[str, float, str]]
    phases: dict[str, float]                      # "load", "generate", "train" -> peak bytes

    @property
    def peak(self) -> float:
        return max(self.phases.values())


def plan_precision(cfg) -> str:
    """'half' (bf16 / fp16 autocast: a GPU's default, llm.pick_precision) or 'fp32' (--device cpu or mps without
    --bf16 / --fp16, or both switched off)."""
    if cfg.bf16 or cfg.fp16:
        return "half"
    if cfg.bf16 is False and cfg.fp16 is False:
        return "fp32"
    return "fp32" if cfg.device in ("cpu", "mps") else "half"


def train_activation_bytes(cfg, s: Shape, precision: str, prompt: int) -> tuple[float, float, str]:
    """(layer activations, logits' backward, how) of one micro-batch of the GRPO update (grpo.grpo_step)."""
    act = 2 if precision == "half" else 4
    stages = cfg.train_stages.split(",") if cfg.method == "ilr" else ["alone"]
    rows = min(cfg.micro_batch_size, cfg.questions_per_step * cfg.num_generations * len(stages))
    T, G = cfg.max_completion_length, cfg.num_generations
    per_token = s.layers * layer_token_bytes(s, precision, cfg.use_peft, cfg.lora_dropout > 0, cfg.lora_r)
    # With a mask (padding, or a prompt cache) transformers' SDPA repeats K and V to every query head and keeps the
    # copies (MEASURED: padding one row adds 2 (heads - kv_heads) head_dim x 4 B per position and layer, +-256 B):
    gqa = rows * (prompt + T) * 2 * (s.heads - s.kv_heads) * s.head_dim * act       # per layer
    if cfg.gradient_checkpointing:   # each layer's input kept; one layer recomputed at a time (plain forward)
        tokens = rows * (prompt + T)
        layers = tokens * (s.layers * s.hidden * CHECKPOINT_BYTES + per_token / s.layers) + gqa
        how = f"{rows} rows x ({prompt:,} + {T}) tokens, checkpointed"
    elif cfg.shared_prefix and G > 1:  # grpo.shared_prefix_logps: U prompts once, the rows' completions, and the
        U = math.ceil(rows / G)       # prompts' keys/values copied to every row (cache.batch_select_indices + cat)
        tokens = U * prompt + rows * T
        layers = tokens * per_token + 2 * rows * prompt * s.layers * 2 * s.kv_heads * s.head_dim * act \
            + s.layers * gqa
        how = f"{U} prompt(s) x {prompt:,} + {rows} rows x {T} tokens (shared prefix)"
    else:
        tokens = rows * (prompt + T)
        layers = tokens * per_token + s.layers * gqa
        how = f"{rows} rows x ({prompt:,} + {T}) tokens"
    logits = (rows * LOGIT_BYTES[precision] + ROW_LOGIT_BYTES[precision]) * (T + 1) * s.vocab
    return layers, logits, how


def generation_bytes(cfg, s: Shape, precision: str, prompts: dict[str, int]) -> tuple[float, str]:
    """(peak bytes, which stage) of one generate call of one agent, the largest of the Idea3 stages and the
    evaluation (llm.generate: batch_size // n prompts per batch, each prefilled once and its cache repeated n
    times; greedy evaluation: batch_size prompts). Peak: the KV cache + the larger of the prefill's working set
    (one layer's MLP at a time: gate, up, product, and the hidden states) and one decoding step's fp32 logits."""
    act = 2 if precision == "half" else 4
    T, B, G = cfg.max_completion_length, cfg.questions_per_step, cfg.num_generations
    trained = cfg.train_stages.split(",") if cfg.method == "ilr" else ["sharing"]
    stages = [(stage, prompt, T, G if stage in trained else 1, B) for stage, prompt in prompts.items()]
    stages.append(("evaluation", QUESTION_TOKENS, cfg.eval_max_new_tokens, 1, cfg.eval_limit or cfg.batch_size))
    best = (0.0, "")
    for stage, prompt, new, n, num_prompts in stages:
        per_batch = min(max(1, cfg.batch_size // n), num_prompts)       # prompts per generate batch
        rows = per_batch * n
        kv = kv_cache_bytes(s, rows, prompt + new, act)
        prefill = per_batch * prompt * (3 * s.intermediate + 4 * s.hidden) * act
        decode = rows * s.vocab * (3 * 4 + act)                         # logits, fp32 copy, scores, softmax
        total = kv + max(prefill, decode)
        if total > best[0]:
            best = (total, f"{stage}: {rows} rows x ({prompt:,} + {new}) tokens, KV cache "
                           f"{kv / GB:.2f} GB + prefill {prefill / GB:.2f} GB")
    return best


def plan(cfg, names: list[str]) -> Plan:
    """The memory plan of the run `cfg` (an ilr.Config) whose agents load `names` (ilr.model_names(cfg), one per
    agent), per phase. Builds each distinct model on the meta device (model_shape); loads no weights."""
    shapes = {n: model_shape(n, target_modules=cfg.lora_target_modules) for n in dict.fromkeys(names)}
    precision = plan_precision(cfg)
    dtype = 2 if cfg.torch_dtype == "bfloat16" else 4                      # bytes of a loaded weight
    peft, M = cfg.use_peft, len(names)
    # Weights: one copy per agent, or ONE frozen base per distinct model with adapters (agents share it).
    bases = list(shapes.values()) if peft else [shapes[n] for n in names]
    weights = sum(weight_bytes(s, dtype, cfg.load_in_4bit) for s in bases)
    reference = 0 if peft or cfg.beta == 0 else sum(weight_bytes(shapes[n], dtype, False) for n in names)
    trained = sum(shapes[n].lora_per_rank * cfg.lora_r if peft else shapes[n].params for n in names)
    trained_bytes = 4 if peft else dtype                                   # adapters fp32 (choice 3)
    optimizer = trained * (2 * trained_bytes if cfg.optim == "adamw_torch" else OPTIMIZER_BYTES["adamw_8bit"])
    adapters = trained * 4 if peft else 0
    grads = trained * trained_bytes
    resident = weights + reference + adapters + grads + optimizer
    # Autocast's half copy of fp32 weights: kept for the backward (train) and during a forward (full fine-tuning).
    copies = max(s.params for s in shapes.values()) * 2 if precision == "half" and dtype == 4 \
        and not cfg.load_in_4bit else 0
    prompts = prompt_tokens(cfg)
    train_prompt = max(prompts.get(st, QUESTION_TOKENS) for st in cfg.train_stages.split(",")) \
        if cfg.method == "ilr" else QUESTION_TOKENS
    generate, gen_how = max(generation_bytes(cfg, s, precision, prompts) for s in shapes.values())
    layers, logits, train_how = max((train_activation_bytes(cfg, s, precision, train_prompt) for s in shapes.values()),
                                    key=lambda t: t[0] + t[1])          # the agent with the largest update
    phases = {"load": weights + reference + adapters,
              "generate": resident + (copies if not peft else 0) + generate,
              "train": resident + copies + layers + logits}
    what = ", ".join(f"{n} ({s.params / 1e9:.2f} B params)" for n, s in shapes.items())
    how = (f"LoRA r {cfg.lora_r} on {cfg.lora_target_modules} ({trained / M / 1e6:.1f} M params per agent), "
           f"{len(shapes)} shared {'4-bit ' if cfg.load_in_4bit else ''}base(s)" if peft else "full fine-tuning")
    parts = [
        ("weights", weights, f"{len(bases)} x model in {cfg.torch_dtype}" + (", block linears NF4" if
                                                                               cfg.load_in_4bit else "")),
        ("reference", reference, "beta = 0: none" if cfg.beta == 0 else
         "the base with adapters disabled: no copy" if peft else f"{M} x model (beta > 0)"),
        ("adapters", adapters, f"{M} x {trained / M / 1e6:.1f} M params, fp32" if peft else "none"),
        ("gradients", grads, f"{trained / 1e6:,.1f} M trained params x {trained_bytes} B"),
        ("optimizer", optimizer, f"{cfg.optim}: two moments per trained param"),
        ("autocast copies", copies, "bf16/fp16 copy of fp32 weights (forward/backward)" if copies else "none"),
        ("generation", generate, gen_how),
        ("train activations", layers, train_how),
        ("train logits", logits, f"{LOGIT_BYTES[precision]} B per logit + {ROW_LOGIT_BYTES[precision]} B per logit of "
                                 "one row, at the backward's peak"),
    ]
    summary = (f"{cfg.method}, {M} agent(s): {what} | {how} | "
               f"{'bf16/fp16 mixed precision' if precision == 'half' else 'fp32'}")
    return Plan(summary, parts, phases)


def format_plan(p: Plan) -> str:
    """The plan as the console shows it: components, the peak per phase, which cards it fits."""
    lines = [f"[memory] {p.summary}"]
    lines += [f"  {label:<18} {value / GB:8.2f} GB   {how}" for label, value, how in p.parts]
    lines.append("  peak per phase:   " + " | ".join(f"{k} {v / GB:.2f} GB" for k, v in p.phases.items()))
    cards = " | ".join(f"{card} {'yes' if ok else 'no'}" for card, ok in fits(p.peak).items())
    lines.append(f"  fits (peak x {1 + FRAGMENTATION:.1f} + {CUDA_CONTEXT / GIB:.1f} GiB CUDA context): {cards}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# 4) Checking the plan: the peak of live tensor bytes of a real GRPO step (CPU or GPU), and the coefficients
# ----------------------------------------------------------------------------------------------------------

class LiveBytes(TorchDispatchMode):
    """Peak of live tensor bytes on any device (the CPU too, where torch.cuda's counters do not exist).

    Every tensor an operation returns inside `with LiveBytes(...)` is counted once per storage until Python frees
    that storage (a weak reference tells us); `existing` tensors (weights, gradients, optimizer states) are
    counted from the start, so freeing them counts too. `peak` is the most bytes alive at once.

    >>> x = torch.zeros(1000)                                      # 4,000 B, alive before
    >>> with LiveBytes(x) as live:
    ...     y = x + 1                                              # +4,000 B
    ...     del y                                                  # freed
    ...     z = x * 2
    >>> live.peak, live.now
    (8000, 8000)
    """

    def __init__(self, *existing: torch.Tensor):
        super().__init__()
        self.bytes: dict[int, int] = {}        # storage address -> its bytes, while it lives
        self.refs: dict[int, weakref.ref] = {}
        self.now = self.peak = 0
        for tensor in existing:
            self.add(tensor)

    def add(self, tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if storage.nbytes() == 0 or key in self.bytes:             # a view of a storage already counted
            return
        self.bytes[key] = storage.nbytes()
        self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)

        def freed(_, key=key):
            self.now -= self.bytes.pop(key, 0)
            self.refs.pop(key, None)
        self.refs[key] = weakref.ref(storage, freed)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            self.add(tensor)
        return out


def step_batch(cfg, vocab: int, seed: int = 0):
    """A GRPO batch at the plan's shapes: B questions x G answers (x trained stages) of exactly T tokens, each
    question's G rows sharing one prompt of the planned length, random ids, nonzero advantages."""
    import grpo

    stages = cfg.train_stages.split(",") if cfg.method == "ilr" else ["alone"]
    P = max(prompt_tokens(cfg).get(st, QUESTION_TOKENS) for st in stages) if cfg.method == "ilr" else QUESTION_TOKENS
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()
    prompts = [ids(P) for _ in range(cfg.questions_per_step * len(stages))]
    prompt_ids = [p for p in prompts for _ in range(cfg.num_generations)]            # [B*G] (x stages)
    completion_ids = [ids(cfg.max_completion_length) for _ in prompt_ids]
    advantages = torch.randn(len(prompt_ids), generator=g)                          # [N], no zero: none skipped
    return grpo.pack_batch(prompt_ids, completion_ids, pad_id=0), advantages


def measure_train_peak(cfg, model) -> int:
    """Peak live bytes of one GRPO update of `model` (grpo.grpo_step, as ilr.train_step calls it) on `step_batch`,
    in the steady state: a first step makes the gradients and AdamW's states, the second is measured. `model`
    is placed as the run would place it (its trainable parameters are what AdamW holds)."""
    import grpo

    batch, advantages = step_batch(cfg, model.config.vocab_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0, fused=True)    # as ilr
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()

    def step():
        grpo.grpo_step(model, optimizer, batch, advantages, micro_batch_size=cfg.micro_batch_size,
                       temperature=cfg.temperature, shared_prefix=cfg.shared_prefix, max_grad_norm=cfg.max_grad_norm)
    step()
    alive = list(model.parameters()) + [p.grad for p in params] + \
        [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    with LiveBytes(*alive) as live:
        step()
    return live.peak


def dry_run(cfg, names: list[str]) -> dict:
    """`python ilr.py ... --dry_run`: print the plan of `cfg`; returns it as a dict (bytes) for tests."""
    p = plan(cfg, names)
    print(format_plan(p), flush=True)
    return {"plan": {"parts": {label: value for label, value, _ in p.parts}, "phases": p.phases,
                     "fits": fits(p.peak)}}


def _held_after_forward(config, precision: str, adapters: bool, dropout: float, rank: int, tokens=(4, 48, 16)):
    """Bytes autograd holds after grpo.per_token_logps on a random model of `config` (N rows, P + T tokens)."""
    import grpo
    import llm
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if adapters:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout,
                                                 target_modules="all-linear"))
    llm.set_precision(model, "bf16" if precision == "half" else "fp32")
    model.train()
    N, P, T = tokens
    ids = torch.randint(3, config.vocab_size, (N, P + T))
    with LiveBytes(*model.parameters()) as live:
        logps = grpo.per_token_logps(model, ids, torch.ones_like(ids), T, temperature=0.7)   # noqa: F841 (held)
        return live.now - sum(p.numel() * p.element_size() for p in model.parameters())


def measure_activation_bytes(precision: str, adapters: bool, dropout: bool) -> tuple[float, ...]:
    """Re-measure one ACTIVATION_BYTES row: bytes held per token and layer (6 layers minus 2, so the embedding and
    logits cancel) on Llama configs that differ in one size at a time, as coefficients of (hidden, intermediate,
    q dim, kv dim, rank). Half precision: bf16 autocast on an fp32 model, whose 2 B per linear weight that
    autocast keeps are taken out (the plan counts them as 'autocast copies'); for adapters on a half base too."""
    from transformers import LlamaConfig

    def per_token(h=256, i=512, heads=4, kv=2, r=16):
        config = lambda layers: LlamaConfig(vocab_size=512, hidden_size=h, intermediate_size=i, head_dim=64,
                                            num_hidden_layers=layers, num_attention_heads=heads,
                                            num_key_value_heads=kv)
        held = [_held_after_forward(config(n), precision, adapters, 0.05 if dropout else 0.0, r) for n in (6, 2)]
        linear = h * (heads + 2 * kv) * 64 + heads * 64 * h + 3 * h * i           # weights of one layer's linears
        copies = 2 * linear / (4 * 64) if precision == "half" else 0             # per token (4 rows x 64 tokens)
        return (held[0] - held[1]) / 4 / (4 * 64) - copies
    base = per_token()
    return ((per_token(h=512) - base) / 256, (per_token(i=1024) - base) / 512,
            (per_token(heads=8) - base - 16) / 256, (per_token(kv=4) - base) / 128,
            (per_token(r=32) - base) / 16 if adapters else 0)


def measure_logit_bytes(precision: str) -> tuple[float, float]:
    """Re-measure (LOGIT_BYTES, ROW_LOGIT_BYTES): the peak bytes of a GRPO forward + backward per logit and per
    logit of one row, from 2-layer models that differ only in their vocabulary (65,536 vs 512; the larger one's
    embedding gradient taken out), at N x T = 4 x 48, 8 x 48 and 4 x 96: per vocabulary entry the extra bytes are
    N (T + 1) x per logit + (T + 1) x per row logit + a constant (in bf16 the head's autocast copy, which the
    plan counts as "autocast copies")."""
    import grpo
    import llm
    from transformers import LlamaConfig, LlamaForCausalLM

    def peak(vocab, N, T):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             tie_word_embeddings=True))      # one V x h gradient to take out
        llm.set_precision(model, "bf16" if precision == "half" else "fp32")
        model.train()
        ids = torch.randint(3, 500, (N, 48 + T))
        with LiveBytes(*model.parameters()) as live:
            grpo.per_token_logps(model, ids, torch.ones_like(ids), T, temperature=0.7).sum().backward()
        return live.peak
    extra_vocab = 65536 - 512
    shapes = [(4, 48), (8, 48), (4, 96)]
    per_entry = [(peak(65536, N, T) - peak(512, N, T)) / extra_vocab - 64 * 4 for N, T in shapes]
    A = torch.tensor([[N * (T + 1), T + 1, 1.0] for N, T in shapes], dtype=torch.float64)
    per_logit, per_row, _ = torch.linalg.solve(A, torch.tensor(per_entry, dtype=torch.float64)).tolist()
    return per_logit, per_row
