"""The configuration of one trial: plain, picklable dataclasses.

A :class:`TrialConfig` is what a trial runs (model, data, adapter, training, evaluation);
:class:`ResourcesConfig` is what it reserves and how it runs (one process or a Ray Train
worker group). The sweep around them is :class:`sweeps.config.SweepConfig`. The driver builds
each trial's config from the base config plus its hyperparameters to check it before launch;
the trial builds it once more from the same data in its own process. Each dataclass checks
its own values in ``__post_init__``, so a bad value is refused before anything launches, with
the field named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from trainables.errors import UserError, did_you_mean, one_of
from trainables.methods import METHODS, check_trial


def positive_int(name: str, value: int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or value < 1:
        raise UserError(name, f"must be a positive integer, got {value!r}")


def positive_number(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(name, f"must be a number > 0, got {value!r}")


#: Seeds (the sweep's, a trial's, the data splits') are integers below this: what numpy's and
#: ``datasets``' seeded generators accept (torch's take more, :func:`trainables.batching.epoch_seed`'s
#: multiple included).
SEED_LIMIT = 2 ** 32


def seed_value(name: str, value: int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < SEED_LIMIT:
        raise UserError(name, f"must be an integer from 0 to 2**32 - 1, got {value!r}")


def nonneg(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise UserError(name, f"must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str = "gpt2-medium"
    """A Hugging Face Hub model name (``gpt2-medium``) or a local directory that
    ``from_pretrained`` accepts. Both go through the same loading code."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for a hub name; ignored for local paths."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the frozen base weights are loaded in, whatever dtype the checkpoint was saved in
    (Llama 3.2's bfloat16 too). Adapters, and a classification head trained in full, always
    train in float32."""
    quantization: Literal["none", "nf4"] = "none"
    """``nf4``: load the frozen base in 4-bit NormalFloat with bitsandbytes (QLoRA); its
    ``nn.Linear`` layers become ``bnb.nn.Linear4bit`` and only the adapters train.
    ``adapter.method: qlora`` implies it (:func:`trainables.quantization.quantization_for`).
    A base saved quantised (its config.json has a ``quantization_config``) needs ``nf4`` and
    must be saved in 4-bit NF4 with bitsandbytes, as unsloth/Llama-3.2-1B-bnb-4bit is; one
    saved otherwise (bitsandbytes 8-bit or 4-bit FP4, GPTQ, AWQ) is refused before launch."""
    double_quant: bool = True
    """Quantise the 4-bit quantisation constants too (QLoRA's double quantisation: about
    0.37 bits per parameter saved, 3 GB on a 65B model)."""
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Dtype a 4-bit layer dequantises its weights to for the matmul (QLoRA: bfloat16)."""

    def __post_init__(self) -> None:
        if not self.name_or_path.strip():
            raise UserError("name_or_path", "must name a hub model or a local directory")


@dataclass(frozen=True)
class DataConfig:
    source: str = "e2e_nlg"
    """A hub dataset name or a local directory/file in the task's official format."""
    revision: str | None = None
    """Hub dataset revision; ignored for local paths."""
    format: str | None = None
    """Task-specific input formatting (E2E: ``paper`` or ``raw`` MR linearisation; instruction
    tuning: ``chat`` or ``text``); ``null`` picks the task's default."""
    max_length: int = 512
    """Longest tokenised example (input + target) in tokens; longer ones are truncated."""
    train_limit: int | None = None
    """Use only the first N training examples (``quick``/``smoke`` presets)."""
    val_limit: int | None = None
    """Use only the first N validation examples for the validation loss."""
    test_limit: int | None = None
    """Generate for only the first N test inputs (E2E: unique MRs)."""
    split: str | None = None
    """Classification split policy: ``paper`` (the dev set is the validation and test set, as
    the LoRA paper reports), ``holdout`` (validation = a seeded 10% of train) or ``resplit``
    (all labelled data, seeded 80/10/10); null = the task's default."""
    split_seed: int = 0
    """Seed of the ``holdout``/``resplit`` splits, of ``holdout_size``/``train_fraction``, and
    of augmentation: 0 to 2**32 - 1."""
    holdout_size: int | None = None
    """How many training examples are held out (seeded) as the validation set. Classification
    under the ``holdout`` split policy: null = 10% of train. Instruction tuning: the held-out
    conversations (as ``datasets``' ``train_test_split(test_size=N, seed=split_seed)`` picks
    them) replace the source's own validation split; needed for a ``guanaco`` source without
    one (``sft`` and ``text-classification`` hold out a seeded 10% of train when the data has no
    validation split and this is null)."""
    train_fraction: float = 1.0
    """Instruction tuning: train on a seeded random ``floor(n * train_fraction)`` of the
    training conversations (after any hold-out), e.g. 0.2 for a one-fifth cut."""
    columns: dict[str, str] | None = None
    """Generic text tasks (``sft``, ``text-classification``): which column of the data holds
    what, as ``{role: column}``; a role left out takes its default column. ``sft``: ``prompt``,
    ``query``, ``response`` and ``system`` (defaults: Alpaca's ``instruction``, ``input``,
    ``output``), or ``messages``, a list of ``{role, content}`` (or ShareGPT ``{from, value}``)
    turns (the default when the data has a ``messages`` or ``conversations`` column).
    ``text-classification``: ``text``, ``text_pair`` (optional) and ``label`` (defaults:
    ``text``, ``text_pair`` when present, ``label``)."""
    augment: Literal["none", "synonyms"] = "none"
    """Training-text augmentation: ``synonyms`` adds copies with words replaced by synonyms."""
    augment_prob: float = 0.1
    """Probability that a word with synonyms is replaced."""
    augment_copies: int = 1
    """Augmented copies of each training example."""
    synonyms: str | None = None
    """A JSON word list ``{word: [synonyms]}``; null = the bundled offline list."""
    predict_file: str | None = None
    """An unlabelled CSV (``id`` + text columns); completed trials write ``predictions.csv``."""
    predict_labels: Literal["index", "release"] = "index"
    """How ``predictions.csv`` writes a class: ``index``, its id 0..n-1 as the hub dataset
    numbers the classes; ``release``, the label of the task's original release (AG News's
    CSVs: 1-4). ``text-classification`` (your own data) writes the data's own labels under
    either, here and in ``test_predictions.csv``."""
    standardize_targets: bool = True
    """Regression tasks (STS-B): train on the targets standardised with the mean and standard
    deviation of the training labels, z = (y - mean) / std, and map the model's outputs back,
    y = mean + std * z, before any metric or validation loss (so those are in the task's units;
    Pearson and Spearman are unchanged by an affine map; the train loss is in z units). A
    fresh regression head otherwise spends its first steps growing to the labels' scale (0-5
    for STS-B), which early ASHA rungs would measure instead of the adapter. The mean and
    standard deviation are recorded with the trial (``data.target_mean``, ``data.target_std``).
    No effect on classification tasks."""
    image_size: int | None = None
    """Vision tasks: side length the images are resized to (bilinear, on the fly; the cache
    keeps the native pixels); null = the data's native size (CIFAR-10: 32). ImageNet-trained
    models such as ResNet-18 were trained at 224."""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise UserError("source", "must name a hub dataset or a local directory/file")
        positive_int("max_length", self.max_length)
        for name in ("train_limit", "val_limit", "test_limit"):
            positive_int(name, getattr(self, name), allow_none=True)
        if not 0.0 <= self.augment_prob <= 1.0:
            raise UserError("augment_prob", f"must be in [0, 1], got {self.augment_prob!r}")
        positive_int("augment_copies", self.augment_copies)
        positive_int("image_size", self.image_size, allow_none=True)
        positive_int("holdout_size", self.holdout_size, allow_none=True)
        seed_value("split_seed", self.split_seed)
        for role, column in (self.columns or {}).items():
            if not (isinstance(column, str) and column.strip()):
                raise UserError(f"columns.{role}", f"must name a column of the data, got {column!r}")
        if not (math.isfinite(self.train_fraction) and 0.0 < self.train_fraction <= 1.0):
            raise UserError("train_fraction", f"must be in (0, 1], got {self.train_fraction!r}")


@dataclass(frozen=True)
class AdapterConfig:
    method: str = "lora"
    """Fine-tuning method, one of :data:`trainables.methods.METHODS`: ``full``, ``lora``,
    ``rslora``, ``dora``, ``loraplus``, ``vera``, ``lora-fa``, ``pissa``, ``olora``, ``qlora``.
    Searchable like the other adapter fields. ``vera``: ``r`` is the rank of its shared random
    projections (256-1024 in the VeRA paper) and alpha is unused; ``full``: no adapter, every
    parameter trains, the other adapter fields are unused."""
    r: int = 4
    """LoRA rank r: each adapted d_out x d_in weight gets B (d_out x r) @ A (r x d_in)."""
    alpha: float | None = 32.0
    """LoRA alpha; the update is scaled by alpha / r (alpha / sqrt(r) for rslora).
    Set ``alpha_over_r`` instead to tie alpha to the rank."""
    alpha_over_r: float | None = None
    """Alpha as a multiple of the rank (alpha = alpha_over_r * r); excludes ``alpha``. Given
    in a preset, a part, ``--set`` or a search space, either one clears the other."""
    dropout: float = 0.1
    """Dropout on the adapter's input."""
    targets: str = "qv"
    """A named target group of the model family (GPT-2: ``qv``, ``c_attn``, ``qkvo``,
    ``attn+proj``, ``mlp``, ``all-linear``; RoBERTa/BERT/DeBERTa: ``qv``, ``qkvo``, ``all-linear``; Llama,
    Qwen2, Qwen3, Mistral, Gemma 1-3 (text): ``qv``, ``attn``, ``mlp``, ``all-linear``) or a comma-separated list
    of module names."""
    init_weights: Literal["default", "gaussian"] = "default"
    """How LoRA's A starts (B starts at zero either way): ``default`` is peft's (and the LoRA
    paper's loralib's) Kaiming-uniform A; ``gaussian`` draws A from N(0, 1/r^2), peft's
    ``init_lora_weights="gaussian"``. Only for methods that leave the initialisation to LoRA
    (not ``pissa``/``olora``, whose A and B come from W, nor ``vera`` or ``full``)."""
    loraplus_lr_ratio: float = 16.0
    """``loraplus``: B's learning rate over A's (train.lr is A's). 16 = 2^4, the LoRA+ paper's
    recommendation (Hayou et al. 2024, arXiv:2402.12354); peft asks for >= 1."""
    init_from: str | None = None
    """Warm start: an adapter directory, or ``runs:/<run_id>`` (a trial's adapter in MLflow,
    e.g. the best MNLI trial), whose LoRA weights initialise this adapter (the head stays
    fresh); null = peft's initialisation (B = 0). Searchable, to compare both in one sweep.
    In a multi-part study, ``best:<part>`` (``best:mnli``): the best completed trial of that
    part, which then runs first (:mod:`sweeps.chain`)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError("method", f"unknown adapter method {self.method!r}"
                                      f"{did_you_mean(self.method, METHODS)}; "
                                      f"accepted: {one_of(METHODS)}")
        if not math.isfinite(self.loraplus_lr_ratio) or self.loraplus_lr_ratio < 1:
            raise UserError("loraplus_lr_ratio", f"must be a number >= 1, got {self.loraplus_lr_ratio!r}")
        if self.method == "full" and self.init_from:
            raise UserError("init_from", "a warm start loads adapter weights, and method 'full' has "
                                         "no adapter; use a LoRA method or init_from=null")
        if (self.init_from or "").startswith("best:") and not self.init_from[5:].strip():
            raise UserError("init_from", "best: needs a part name, e.g. best:mnli")
        positive_int("r", self.r)
        if self.alpha is None and self.alpha_over_r is None:
            raise UserError("alpha", "set alpha (a number) or alpha_over_r (a multiple of r)")
        if self.alpha is not None and self.alpha_over_r is not None:
            raise UserError("alpha", "set either alpha or alpha_over_r, not both "
                                     f"(got alpha={self.alpha}, alpha_over_r={self.alpha_over_r})")
        for name in ("alpha", "alpha_over_r"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise UserError(name, f"must be a number > 0, got {v!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise UserError("dropout", f"must be in [0, 1), got {self.dropout!r}")
        if not any(t.strip() for t in self.targets.split(",")):
            raise UserError("targets", f"must name a target group or module names, got {self.targets!r}")

    @property
    def lora_alpha(self) -> float:
        """The alpha peft receives, whichever way it was given."""
        return self.alpha if self.alpha is not None else self.alpha_over_r * self.r


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 2e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay (on the trainable parameters)."""
    adam_beta1: float = 0.9
    """AdamW's first-moment decay."""
    adam_beta2: float = 0.999
    """AdamW's second-moment decay."""
    adam_eps: float = 1e-6
    """1e-6 as in the LoRA paper's GPT-2 scripts (torch's default is 1e-8)."""
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """Learning-rate schedule after warmup (linear decays to 0 at the last step)."""
    warmup_steps: int = 500
    """Linear warmup steps (the paper's E2E setting); see also ``warmup_ratio``."""
    warmup_ratio: float | None = None
    """Warmup as a fraction of all steps; when set it replaces ``warmup_steps``."""
    label_smoothing: float = 0.1
    """Label smoothing of the training loss (the validation loss is always plain CE)."""
    batch_size: int = 8
    """Examples per batch across all of a trial's workers (an optimizer step sums ``grad_accum``
    batches): each of ``resources.workers_per_trial`` workers takes ``batch_size /
    workers_per_trial`` of them (a multiple of the workers is required), so the setting means
    the same global batch whatever the number of workers."""
    grad_accum: int = 1
    """Batches whose gradients are summed before each optimizer step."""
    epochs: float = 5.0
    """Passes over the training data; fractional values stop part-way."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides ``epochs``; used by benchmarks)."""
    max_grad_norm: float | None = None
    """Clip the gradient norm; null = no clipping (the paper used ``--clip 0.0``)."""
    eval_every_steps: int | None = None
    """Compute the validation loss and report to Tune every N optimizer steps; null = once
    per epoch. ASHA's rungs stay in epochs (``scheduler.grace_period``); with reports within an
    epoch they can fall there."""
    eval_batch_size: int = 16
    """Examples per batch of the validation pass."""
    batching: Literal["random", "grouped", "padding_free"] | None = None
    """How examples of different lengths are batched (:mod:`trainables.batching`).
    ``random``: random batches, each padded to its longest example. ``grouped``: batches of
    examples of similar length, so little padding: the data is shuffled, cut into groups of up
    to 50 batches, each group sorted by length and cut into batches, and the batches are
    shuffled; seeded like ``random``, so the order depends only on the seed and the epoch.
    ``padding_free``: ``random``'s batches without any padding, each one row of its examples
    with positions restarting at every example (transformers' ``DataCollatorWithFlattening``);
    accepted only for a model whose attention keeps the examples of a row apart (transformers'
    masks for sdpa, eager and flex attention, flash-attention's sequence boundaries). Only
    flash-attention computes each example's attention on its own; the others compute the whole
    row's under a block-diagonal mask, which on a CPU costs more than the padding saves. The
    validation pass batches the same way (``grouped``: longest first). The loss is the same
    per-token mean in every mode. null = the task's default: ``grouped`` for the causal-LM
    tasks (the most useful tokens per second of the three on a CPU: docs/performance.md),
    ``random`` for classification and images. The ``paper`` presets batch as their sources
    did (``random`` unless the source grouped examples by length); a trial records the mode
    it ran with."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision of the forward and backward passes (the adapter's weights and the
    optimizer stay float32): bf16 on GPUs from Ampere on; fp16 through torch's gradient scaler
    (the loss scaled up before the backward pass, a step whose gradients overflowed skipped,
    the scale logged as ``loss_scale``). A precision the trial's device cannot compute in is
    refused (CPU trials before launch)."""
    log_every_steps: int = 10
    """Record train loss and learning rate every N optimizer steps (logged to MLflow in
    batches with each report, not one call per step)."""
    optimizer: Literal["adamw", "paged_adamw_32bit", "paged_adamw_8bit"] = "adamw"
    """``adamw``: torch's AdamW; ``paged_adamw_32bit`` / ``paged_adamw_8bit``: bitsandbytes'
    paged AdamW (QLoRA), whose state pages to CPU memory under GPU memory pressure (8bit:
    blockwise 8-bit state). On a CPU-only trial bitsandbytes keeps the state unpaged (there
    is nowhere to page to); the trial records a note saying so."""
    fused_optimizer: bool | None = None
    """torch's fused AdamW (one kernel over all parameters instead of multi-tensor loops; CUDA
    and CPU kernels; ``bench/loop_throughput.py`` measures the difference);
    null = fused where torch has the kernel (CPU, CUDA). Only for ``optimizer: adamw``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of storing them (less memory, about
    30% more compute); with a 4-bit base, through peft's ``prepare_model_for_kbit_training``."""
    early_stopping_patience: int | None = None
    """Stop a trial when the task's metric (e.g. ``val_accuracy``) has not improved for N
    reports in a row; the best weights are then restored and the final evaluation runs on
    them (reported as ``best_epoch`` and ``stopped_early_at``). null = train to the end."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """How a trial on several workers (``resources.workers_per_trial`` > 1) spreads its model.
    ``ddp``: every worker holds the whole model and the gradients are averaged (DDP).
    ``fsdp``: PyTorch FSDP2 (``fully_shard``) splits every parameter, the frozen base weights
    included, over the workers, block by block, and all-gathers a block's for its forward and
    backward: a base too large for one device trains on several. Checkpoints hold the adapter
    gathered to full tensors (the same files a one-process trial writes). Refused with one
    worker, with a 4-bit base, with adapter methods not checked under FSDP (accepted:
    ``lora``), and with fp16, paged optimizers, gradient checkpointing, ``keep_best`` and early
    stopping (not checked under FSDP). docs/ray-train.md says what was checked."""
    keep_best: bool = False
    """Train to the end, then restore the weights of the report with the best task metric
    (e.g. ``val_accuracy``) and run the final evaluation on them: each run taken at its best
    validation epoch, as the LoRA paper reports GLUE. The final report records ``best_epoch``
    and ``best_step``, the report whose weights the final metrics (and the saved adapter) come
    from, and, when that is not the last report, the last report's own validation metrics as
    ``last_val_loss``, ... (the report's learning curves end there). Implied by
    ``early_stopping_patience``."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise UserError("lr", f"must be a number > 0, got {self.lr!r}")
        nonneg("weight_decay", self.weight_decay)
        for name in ("adam_beta1", "adam_beta2"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise UserError(name, f"must be in [0, 1), got {v!r}")
        if not math.isfinite(self.adam_eps) or self.adam_eps <= 0:
            raise UserError("adam_eps", f"must be a number > 0, got {self.adam_eps!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise UserError("warmup_steps", f"must be an integer >= 0, got {self.warmup_steps!r}")
        if self.warmup_ratio is not None and not 0.0 <= self.warmup_ratio < 1.0:
            raise UserError("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError("label_smoothing", f"must be in [0, 1), got {self.label_smoothing!r}")
        for name in ("batch_size", "grad_accum", "eval_batch_size", "log_every_steps"):
            positive_int(name, getattr(self, name))
        if not math.isfinite(self.epochs) or self.epochs <= 0:
            raise UserError("epochs", f"must be a number > 0, got {self.epochs!r}")
        positive_int("max_steps", self.max_steps, allow_none=True)
        positive_int("eval_every_steps", self.eval_every_steps, allow_none=True)
        positive_int("early_stopping_patience", self.early_stopping_patience, allow_none=True)
        if self.max_grad_norm is not None and (not math.isfinite(self.max_grad_norm)
                                               or self.max_grad_norm <= 0):
            raise UserError("max_grad_norm", f"must be > 0 or null, got {self.max_grad_norm!r}")


@dataclass(frozen=True)
class EvalConfig:
    generate: bool = True
    """Decode the test set and compute the task's generation metrics when a trial reaches
    its last report (trials stopped early by ASHA keep only their losses)."""
    num_beams: int = 10
    """Beam width of the final decoding (1 = greedy)."""
    length_penalty: float = 0.9
    """Beam score = sum of log-probabilities / generated length ** length_penalty. 0.9 is the
    LoRA paper's E2E value (Hu et al. 2021, Table 11; 0.8 for WebNLG and DART); the E2E command
    in microsoft/LoRA's examples/NLG/README.md passes ``gpt2_beam.py --length_penalty 0.8``."""
    no_repeat_ngram_size: int = 4
    """Decoding never repeats an n-gram of this size (0 = no constraint)."""
    max_new_tokens: int = 64
    """Longest generated continuation, in tokens."""
    batch_size: int = 8
    """Inputs decoded per ``generate`` call (each expands to ``num_beams`` sequences)."""
    meteor: bool | None = None
    """Compute METEOR (a Java program); null = when Java is available, else skipped and said."""
    prompts: str | None = None
    """Instruction tasks: a JSONL file of fixed prompts to generate for at the end of a full
    trial (``{"id", "prompt"}`` or ``{"id", "messages"}`` lines), or the name of a bundled list
    (``tuwien_queries``: the reproduction report's five); null = the task's own list."""
    judge: str | None = None
    """Instruction tasks: what scores the answers (:mod:`trainables.judge`), a Python callable
    ``module:function`` (``f(prompt, answer) -> number`` for each answer; given on the command
    line or in a preset, never in a search space) or the ``http(s)://`` URL of an
    OpenAI-compatible chat-completions API that grades the ``compare_models`` answers side by
    side, 1-9 with a justification; null = not judged."""
    judge_model: str | None = None
    """The model an ``http(s)://`` judge is asked for, e.g. ``gpt-4o``."""
    judge_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the judge endpoint's API key (read where the trial
    runs; never in a config, never recorded)."""
    compare_models: tuple[str, ...] = ("tuned",)
    """Instruction tasks: the models that answer the prompts, in the order a judge sees their
    answers (A, B, C, ...): ``tuned`` (the trial's model with its adapter) and hub names or
    local directories, loaded unquantised in ``model.dtype``."""

    def __post_init__(self) -> None:
        for name in ("num_beams", "max_new_tokens", "batch_size"):
            positive_int(name, getattr(self, name))
        if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise UserError("no_repeat_ngram_size",
                            f"must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        if not math.isfinite(self.length_penalty):
            raise UserError("length_penalty", f"must be a number, got {self.length_penalty!r}")
        from trainables.judge import check_judging

        check_judging(self)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; the sweep's sampled hyperparameters are merged into it."""

    task: str = "e2e"
    """A registered task name (``e2e``, ``glue-sst2``; :mod:`trainables.tasks.registry`) or a
    user's task class as ``module:Class``."""
    seed: int | None = None
    """Trial seed, 0 to 2**32 - 1; null = derived from the sweep seed and the trial's hyperparameters."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        seed_value("seed", self.seed, allow_none=True)
        # The task's name is checked where the task is looked up (trainables.tasks.registry),
        # which the planning of every sweep does first.
        check_trial(self)  # the method with the base's quantisation and the optimizer


@dataclass(frozen=True)
class ResourcesConfig:
    cpus_per_trial: float = 1.0
    """CPUs reserved per trial (also the torch thread count of a one-process trial)."""
    gpus_per_trial: float = 0.0
    """GPUs per trial; fractions (0.5, 0.25) pack several small trials on one GPU."""
    workers_per_trial: int = 1
    """Ray Train workers per trial; more than one runs the trial's loop on
    that many workers (DDP, or FSDP2: ``train.strategy``)."""
    trial_shape: Literal["auto", "function", "train"] = "auto"
    """``function``: the loop runs in the Tune trial's own process (one device, actor reuse:
    the cheapest); ``train``: the trial launches a Ray Train ``TorchTrainer`` worker group
    (needed for several workers, seconds more per trial to start it); ``auto``: ``train`` when
    workers_per_trial > 1, else ``function``."""
    collective_timeout_s: int = 1800
    """Seconds a worker of a worker-group trial waits in one of torch.distributed's collectives
    (an all-reduce, DDP's gradient sync, FSDP's all-gathers) for the other workers before its
    trial fails (Ray Train's ``TorchConfig.timeout_s``): it bounds how far the workers' steps
    may drift apart, and how long a hung worker holds its trial. Work that rank 0 does alone
    (the final evaluation, a judge, writing and storing checkpoints) is never inside one: the
    others wait for it without a time limit."""
    memory_limit_mb: int | None = None
    """Host memory a trial may allocate beyond what its process holds when the trial starts
    (a soft ``RLIMIT_AS`` the trial sets on its own process, lifted when it ends): past it an
    allocation fails and the trial fails as out of memory instead of the machine swapping or
    the kernel killing a neighbour. Linux/macOS; null = no limit. CPU trials only: refused with
    ``gpus_per_trial`` > 0 (CUDA reserves address space far beyond what it uses)."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.cpus_per_trial) or self.cpus_per_trial <= 0:
            raise UserError("cpus_per_trial", f"must be a number > 0, got {self.cpus_per_trial!r}")
        nonneg("gpus_per_trial", self.gpus_per_trial)
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise UserError("gpus_per_trial",
                            f"fractions are for packing trials on one GPU (<= 1); got {self.gpus_per_trial}")
        positive_int("workers_per_trial", self.workers_per_trial)
        if self.trial_shape == "function" and self.workers_per_trial > 1:
            raise UserError("trial_shape", "'function' runs one process; workers_per_trial > 1 "
                                           "needs trial_shape 'train' or 'auto'")
        if self.workers_per_trial > 1 and self.gpus_per_trial and self.gpus_per_trial % self.workers_per_trial:
            raise UserError("gpus_per_trial", f"{self.gpus_per_trial:g} per trial for {self.workers_per_trial} "
                                              "workers: each worker needs whole GPUs of its own (NCCL runs one "
                                              f"rank per GPU); use a multiple of {self.workers_per_trial}")
        positive_int("collective_timeout_s", self.collective_timeout_s)
        positive_int("memory_limit_mb", self.memory_limit_mb, allow_none=True)
        if self.memory_limit_mb and self.gpus_per_trial > 0:
            raise UserError("memory_limit_mb", "limits a trial's address space (RLIMIT_AS), which CUDA's "
                                               "address reservations exceed: it is for CPU trials only "
                                               f"(gpus_per_trial 0), got gpus_per_trial={self.gpus_per_trial:g}")

    @property
    def uses_train_workers(self) -> bool:
        return self.trial_shape == "train" or (self.trial_shape == "auto" and self.workers_per_trial > 1)
