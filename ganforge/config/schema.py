"""The run configuration's schema: pydantic models (``extra="forbid"`` everywhere) for the model (each family's
own), data, train, eval and guard sections, and which train keys the loop and each family read."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, TypeAdapter, field_validator, model_validator

from ganforge.config_base import DataConfig, ModelBase, Strict


_Strict = Strict


def _family_configs() -> tuple[type[ModelBase], ...]:
    from ganforge.families import all_families

    return tuple(f.config for f in sorted(all_families().values(), key=lambda f: f.name))


# model.family picks the family's own schema (each family module declares it; see ganforge/families/__init__.py)
ModelConfig = Annotated[Union[_family_configs()], Field(discriminator="family")]
_MODEL_ADAPTER: TypeAdapter = TypeAdapter(ModelConfig)


def model_config(**keys: Any) -> ModelBase:
    """A family's model config from keyword arguments (``family`` defaults to dcgan)."""
    return _MODEL_ADAPTER.validate_python({"family": "dcgan", **keys})


def family_keys(family: str) -> list[str]:
    """The model keys a family accepts (for error messages)."""
    for cls in _family_configs():
        if cls.model_fields["family"].default == family:
            return list(cls.model_fields)
    return []


class EmaConfig(_Strict):
    """Exponential moving average of G's weights; samples and checkpoints' ``generator`` use it when enabled."""

    enabled: bool = False
    decay: float = Field(0.999, gt=0.0, lt=1.0)
    start_step: int = Field(0, ge=0)  # copy G's weights verbatim until this step


DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")
ADA_KEYS = ("ada_pipe", "ada_target", "ada_kimg", "ada_p", "ada_interval")  # read only with train.augment=ada
# train keys the loop reads for every family; any other train key is read only by the families that declare it
# (``Family.train_keys``), and a run that sets one its family does not read is refused (``RunConfig``)
RUN_KEYS = ("epochs", "steps", "time_limit", "batch_size", "lr_decay", "lr_decay_start", "ema", "seed", "device",
            "deterministic", "channels_last", "log_every", "n_fixed", "sample_every", "checkpoint_every",
            "min_interval_steps", "keep_checkpoints", "threads", "precision", "compile", "cuda_graph", "tensorboard",
            "sync_batchnorm", "dist_timeout", "batch_per_device", "freeze_d")
# a switch and the keys that mean something only while it is on: when --set turns the switch off, the keys a
# preset (or the resumed run) set for it go with it, unless --set sets them too (then they are refused as unread)
SWITCHED_OFF = {("train", "augment"): ("ada", tuple(f"train.{k}" for k in ADA_KEYS))}


def smooths(loss: str) -> bool:
    """Whether ``train.loss`` has a real-label target that ``train.real_label`` can smooth."""
    from ganforge.families.parts.losses import SMOOTHED, canonical_loss

    try:
        return canonical_loss(loss) in SMOOTHED
    except ValueError:
        return True  # an unknown loss is reported by its own check


class TrainConfig(_Strict):
    """The optimisation recipe. Defaults are the DCGAN paper's."""

    epochs: Optional[int] = Field(10, ge=1)
    steps: Optional[int] = Field(None, ge=1)  # overrides epochs when set: number of D+G updates
    time_limit: Optional[float] = Field(None, gt=0)  # seconds: stop cleanly (checkpoint, pictures) once exceeded
    batch_size: int = Field(64, ge=1)
    # the adversarial loss: minimax (Goodfellow's saturating G loss), bce (non-saturating, the seeds' flipped labels),
    # lsgan (least squares), wgan (critic, with weight_clip), wgan-gp (critic, with gp_lambda), hinge,
    # rpgan (relativistic pairing, R3GAN: pair it with r1_gamma and r2_gamma)
    loss: Literal["minimax", "bce", "lsgan", "wgan", "wgan-gp", "hinge", "rpgan"] = "bce"
    optimizer: Literal["adam", "rmsprop"] = "adam"  # rmsprop: the WGAN paper's (betas unused)
    lr_g: float = Field(2e-4, gt=0.0)  # two time-scale update rule (Heusel et al. 2017): set lr_d != lr_g
    lr_d: float = Field(2e-4, gt=0.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    real_label: float = Field(1.0, gt=0.0, le=1.0)  # one-sided label smoothing: 0.9 in the seeds' MLP GAN
    d_steps: int = Field(1, ge=1)  # k discriminator steps per generator step (Goodfellow et al., Algorithm 1)
    r1_gamma: float = Field(0.0, ge=0.0)  # R1 penalty gamma/2 E||grad_x D(x)||^2 on reals (Mescheder et al. 2018); 0 = off
    r2_gamma: float = Field(0.0, ge=0.0)  # R2: the same penalty on fakes (R3GAN's partner of R1 for rpgan); 0 = off
    r1_every: int = Field(1, ge=1)  # lazy R1 and R2 (StyleGAN2): every k D steps, weighted by k
    gp_lambda: Optional[float] = Field(None, ge=0.0)  # WGAN-GP penalty weight on interpolates; None: 10 for wgan-gp, else off
    weight_clip: Optional[float] = Field(None, gt=0.0)  # clip D's weights to [-c, c] after each update; None: 0.01 for wgan
    instance_noise: float = Field(0.0, ge=0.0)  # Gaussian noise sigma on D's inputs, annealed linearly to 0 ...
    instance_noise_steps: Optional[int] = Field(None, ge=1)  # ... over this many steps (None: the whole budget)
    g_objective: Literal["adversarial", "feature_matching"] = "adversarial"  # feature matching: Salimans et al. 2016
    diffaugment: str = ""  # DiffAugment policy for D's inputs, real and fake alike, e.g. "color,translation,cutout"
    augment: Literal["none", "ada"] = "none"  # ada: adaptive discriminator augmentation (Karras et al. 2020) ...
    ada_pipe: str = "bgc"  # ... its transform groups: b (flips, 90-degree turns, shifts), g (geometric), c (colour)
    ada_target: float = Field(0.6, gt=0.0, lt=1.0)  # ... the r_t = E[sign(D(real))] it steers towards
    ada_kimg: Optional[float] = Field(None, gt=0.0)  # ... thousands of reals over which p can go 0 -> 1 (the paper:
    # 500 of 25,000); None: a tenth of the run's steps, whatever its length (parts/ada.py, RUN_FRACTION)
    ada_p: Optional[float] = Field(None, ge=0.0, le=1.0)  # ... a fixed p instead of the adaptive one; None = adaptive
    ada_interval: int = Field(4, ge=1)  # ... steps between adjustments of p
    unrolled_steps: int = Field(0, ge=0)  # unrolled GAN (Metz et al. 2017): G looks k D steps ahead; 0 = off
    lr_decay: Literal["none", "linear", "cosine"] = "none"  # learning rates fall to 0 at the end of the budget ...
    lr_decay_start: float = Field(0.0, ge=0.0, lt=1.0)  # ... starting at this fraction of the steps (0 = from the start)
    reuse_fake: bool = False  # G step reuses D-step fakes (PyTorch tutorial) instead of drawing new z (seeds' notebooks)
    ema: EmaConfig = EmaConfig()
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    deterministic: bool = True  # deterministic cuDNN/cuBLAS kernels: bit-exact resume on GPUs (free on CPU); false: autotuned
    channels_last: bool = True  # NHWC memory format for conv models (faster on CPU and tensor cores)
    log_every: int = Field(25, ge=1)  # steps between lines of metrics.jsonl
    n_fixed: int = Field(64, ge=1)  # fixed latent vectors drawn into samples/ every epoch
    sample_every: int = Field(1, ge=1)  # epochs between sample grids (the last epoch is always drawn)
    checkpoint_every: int = Field(1, ge=1)  # epochs between checkpoints (the last epoch is always saved)
    # ... and both at most once every this many steps (0: every such epoch): on a few hundred images an epoch is
    # a few steps, and a grid and a checkpoint after each would cost more than the training
    min_interval_steps: int = Field(0, ge=0)
    keep_checkpoints: int = Field(3, ge=1)  # how many epoch checkpoints to keep besides 'latest'
    threads: Optional[int] = Field(None, ge=1)  # torch intra-op threads; None keeps torch's default
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast forwards; fp16 (CUDA only) adds GradScalers
    # torch.compile of every network (train/compiling.py): off | default | reduce-overhead (CUDA graphs inside
    # compiled regions) | max-autotune-no-cudagraphs; a machine or model it fails on is logged and trains eagerly
    compile: Literal["off", "default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "off"
    # the whole step (forwards, backwards, fused Adam, the NaN guard) replayed as CUDA graphs (train/graphs.py);
    # a device, option or family that cannot be captured (CPU, fp16, rmsprop, ProGAN's growth ...) is logged and
    # trains eagerly
    cuda_graph: bool = False
    tensorboard: bool = False  # scalars, sample grids and guard events as TensorBoard files in the run directory
    sync_batchnorm: bool = False  # data-parallel runs: BatchNorm statistics over the global batch (CUDA only)
    # data-parallel runs: seconds a collective may wait, and after which the watchdog stops a rank whose peer went
    # silent, with one line naming it (docs/DISTRIBUTED.md); never a silent hang
    dist_timeout: float = Field(600.0, gt=0)
    # gradient accumulation (stylegan2-ada's --batch-gpu): each device runs micro-batches of this many samples and
    # steps once per batch_size; None: the whole per-device share at once (docs/DISTRIBUTED.md)
    batch_per_device: Optional[int] = Field(None, ge=1)
    # FreezeD (Mo et al. 2020): D's first K blocks, the ones nearest the image, take no updates (fine-tuning)
    freeze_d: int = Field(0, ge=0)

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_word(cls, v):
        """YAML reads a bare ``off`` / ``on`` as booleans: take them as the words."""
        return {False: "off", True: "default"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _need_budget(self) -> "TrainConfig":
        if self.epochs is None and self.steps is None:
            raise ValueError("set train.epochs or train.steps")
        bad = [p for p in self.diffaugment.split(",") if p.strip() and p.strip() not in DIFFAUGMENT_POLICIES]
        if bad:
            raise ValueError(f"diffaugment: unknown transform {bad[0]!r}: use a comma-separated subset of "
                             f"{','.join(DIFFAUGMENT_POLICIES)}")
        if self.augment == "ada" and self.diffaugment.strip():
            raise ValueError("train.augment=ada and train.diffaugment both augment D's inputs: choose one")
        self._check_real_label()
        return self

    def _check_real_label(self) -> None:
        """One-sided label smoothing needs a real-label target: a loss without one would ignore it."""
        if self.real_label != 1.0 and not smooths(self.loss):
            raise ValueError(f"train.real_label={self.real_label:g} smooths a real-label target, which "
                             f"train.loss={self.loss} has none of: unset it with --set train.real_label=null "
                             "(or use loss bce, minimax or lsgan)")

    @field_validator("ada_pipe")
    @classmethod
    def _ada_letters(cls, v: str) -> str:
        from ganforge.families.parts.ada import parse_pipe

        if not v:
            raise ValueError("ada_pipe is empty: use letters of bgc, e.g. bgc or bg")
        parse_pipe(v)  # a ValueError naming the unknown letter and the valid ones
        return v

    @property
    def gradient_penalty(self) -> float:
        """WGAN-GP's lambda in effect (10, as in the paper, unless set)."""
        return self.gp_lambda if self.gp_lambda is not None else (10.0 if self.loss == "wgan-gp" else 0.0)

    @property
    def clip(self) -> float:
        """The weight clipping in effect (0.01, as in the WGAN paper, unless set)."""
        return self.weight_clip if self.weight_clip is not None else (0.01 if self.loss == "wgan" else 0.0)


class GuardConfig(_Strict):
    """Numerical and collapse guards (see ganforge/train/guards.py)."""

    max_skips: int = Field(5, ge=1)  # consecutive non-finite updates before rolling back to the last checkpoint
    max_rollbacks: int = Field(3, ge=0)  # then stop with a clear message
    rollback_lr_factor: float = Field(0.5, gt=0.0, le=1.0)  # learning rates are scaled by this at each rollback
    on_collapse: Literal["warn", "rollback", "stop"] = "warn"  # what a collapse/domination/divergence finding does
    d_fake_floor: float = Field(0.02, ge=0.0, lt=1.0)  # D(G(z)) below this ...
    d_fake_windows: int = Field(20, ge=1)  # ... for this many log windows: the discriminator dominates
    collapse_ratio: float = Field(0.25, gt=0.0, lt=1.0)  # fixed-z diversity below this share of its peak: collapse
    # class fade, where the data have an in-domain classifier (digits: mnist-cnn): at each sample grid from
    # class_fade_from of the budget on, class_samples extra samples (a fixed seed of their own) are classified, and a
    # class under class_fade_share x its fair share 1/K is reported; class_fade_share=0 or class_samples=0: off
    class_fade_share: float = Field(0.25, ge=0.0, lt=1.0)
    class_fade_from: float = Field(0.25, ge=0.0, le=1.0)
    class_samples: int = Field(500, ge=0)


class EvalConfig(_Strict):
    """Evaluation during training: a small-N metric every few steps, logged, with the best checkpoint kept."""

    every: int = Field(0, ge=0)  # steps between evaluations; 0 turns it off
    n: int = Field(1000, ge=10)  # generated images per evaluation (reference: up to the same number)
    metrics: list[str] = ["fid"]  # any of ganforge/metrics/registry.py's (fid, kid, is, prc, coverage, ...)
    ref: Optional[str] = None  # reference data spec; None = the training data
    extractor: str = "auto"  # auto or a registered extractor (ganforge/metrics/extractors/)
    best: Optional[str] = "fid"  # metric (unlabelled name, e.g. fid, kid, is, classes_covered) that picks checkpoints/best
    # At the end of every finished image run, 'ganforge evaluate RUN' on its own (eval.json, shown by the report,
    # 'ganforge runs', the model card and the last line), with the extractor 'auto' picks, or an offline one when
    # that needs a download (train/reference.py OFFLINE_FALLBACK): seconds on a CPU beyond the extractor
    final: bool = True
    final_n: int = Field(2000, ge=10)  # generated images it scores (translation runs: held-out pairs, at most)
    final_metrics: list[str] = ["fid", "prc", "coverage"]
    # the copy check (metric 'copies') joins the final evaluation when the training set holds at most this many
    # images (small data is where a GAN can hand back its training images); 0: only when final_metrics names it
    copies_max: int = Field(10_000, ge=0)

    @field_validator("metrics", "final_metrics")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from ganforge.metrics.registry import METRICS

        bad = [m for m in v if m not in METRICS]
        if bad or not v:
            raise ValueError(f"unknown metric {bad[0] if bad else v!r}: choose from {', '.join(METRICS)}")
        return v

    @field_validator("metrics")
    @classmethod
    def _periodic(cls, v: list[str]) -> list[str]:
        from ganforge.metrics.registry import METRICS

        late = [m for m in v if METRICS[m].needs_training]
        if late:
            raise ValueError(f"eval.metrics: {late[0]} compares with the training images, which the final "
                             f"evaluation does: put it in eval.final_metrics (or run 'ganforge evaluate RUN')")
        return v

    @field_validator("extractor")
    @classmethod
    def _known_extractor(cls, v: str) -> str:
        from ganforge.metrics.extractors import extractor_names

        if v != "auto" and v not in extractor_names():
            raise ValueError(f"unknown extractor {v!r}: choose from auto, {', '.join(extractor_names())}")
        return v


class RunConfig(_Strict):
    """A whole run: what ``config.yaml`` in a run directory holds."""

    name: str = "custom"
    description: str = ""
    model: ModelConfig = Field(default_factory=lambda: model_config())
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    guard: GuardConfig = GuardConfig()
    # the run whose weights this one started from (ganforge train --init-from RUN_DIR writes it; a record, the
    # flag is what loads them)
    init_from: Optional[str] = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError(f"name={v!r} must be a plain word (it names the run directory)")
        return v

    @model_validator(mode="after")
    def _family_reads_train_keys(self) -> "RunConfig":
        """A train key set to anything but its default must be one the family reads (``Family.train_keys``)."""
        unread = unread_train_keys(self.model.family, self.train)
        if unread:
            raise ValueError(unread_message(self.model.family, unread))
        tc = self.train
        unused = [k for k in ADA_KEYS if getattr(tc, k) != type(tc).model_fields[k].default]
        if tc.augment != "ada" and unused:  # after the family's keys: a family without ADA says so first
            raise ValueError(f"train.{unused[0]} is set but ADA is off: add train.augment=ada, or unset it "
                             f"(--set train.{unused[0]}=null)")
        return self

    @model_validator(mode="after")
    def _pack_divides_batch(self) -> "RunConfig":
        from ganforge.families import batch_multiple

        multiple = batch_multiple(self.model)
        if self.train.batch_size % multiple:
            raise ValueError(f"train.batch_size={self.train.batch_size} must be a multiple of {multiple} for this "
                             f"model (its family packs or groups samples)")
        return self

    @model_validator(mode="after")
    def _family_checks(self) -> "RunConfig":
        """A family's keys checked against the rest of the run (``check_run`` on its model config, if it has one;
        e.g. ProGAN's per-resolution batch sizes against train.batch_size)."""
        check = getattr(self.model, "check_run", None)
        if check is not None:
            check(self)
        return self

    @model_validator(mode="after")
    def _ada_needs_images(self) -> "RunConfig":
        """ADA augments the images a noise-to-image D judges: not points, not translations' pairs."""
        from ganforge.families.outputs import output_of

        kind = output_of(self.model)
        if self.train.augment == "ada" and (not kind.images or kind.translations):
            raise ValueError(f"train.augment=ada augments generated images; model.family={self.model.family!r} "
                             f"makes {kind.name}: leave train.augment at none")
        return self

    @property
    def conditional(self) -> bool:
        from ganforge.families import get_family

        return get_family(self.model.family).conditional


def family_train_keys(family: str) -> tuple[str, ...]:
    """The train keys a family's trainer reads beside the run's own (``RUN_KEYS``), in TrainConfig's order."""
    from ganforge.families import get_family

    declared = set(get_family(family).train_keys)
    return tuple(k for k in TrainConfig.model_fields if k in declared and k not in RUN_KEYS)


def unread_message(family: str, unread: list[str]) -> str:
    """One line naming the train keys ``family`` does not read, and how to unset them."""
    names = ", ".join(f"train.{k}" for k in unread)
    them = "them" if len(unread) > 1 else "it"
    unset = " ".join(f"--set train.{k}=null" for k in unread)
    return (f"{names}: family {family!r} does not read {them}: drop {them}, or unset {them} with {unset} (its train "
            f"keys: {', '.join(family_train_keys(family))}; the run's own keys are read for every family)")


def unread_train_keys(family: str, tc: TrainConfig) -> list[str]:
    """The train keys set to anything but their default that neither the loop nor ``family`` reads."""
    read = set(RUN_KEYS) | set(family_train_keys(family))
    return [k for k, f in TrainConfig.model_fields.items() if k not in read and getattr(tc, k) != f.default]
