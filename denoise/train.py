"""The training loop: stage 1 (conventional losses), stage 2 (Model as Loss), resumable, optionally distributed.

    config = TrainConfig(clean="speech/", noise="noise/", out="runs/mine")
    train(config)            # or: denoise train --clean speech/ --noise noise/ --out runs/mine

Output folder::

    metrics.jsonl    one JSON line per log step and per validation
    last/            latest checkpoint: model folder + training_state.{safetensors,json} (optimizer, RNG, step)
    best/            best validation model of the latest stage (+ ONNX graphs at the end)
    stage1/          final stage-1 model: the frozen loss encoder of stage 2 is rebuilt from it on resume

Batches are a pure function of (seed, stage, step) (see `denoise.data.make_batch`) and the learning
rate a pure function of the step, so a resumed run ends with exactly the weights of an
uninterrupted one. Under ``torchrun`` each process takes its share of the global batch and
gradients are averaged across processes before the optimizer step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from denoise import data as datalib
from denoise.checkpoint import load_model, save_model
from denoise.config import ModelConfig
from denoise.losses import CONVENTIONAL_LOSSES, ConventionalLoss, si_sdr
from denoise.mal import ModelAsLoss
from denoise.model import DenoiseNet
from denoise.stft import torch_istft, torch_stft

VALIDATION_SEED = 0  # the validation split and mixtures do not depend on the training seed
STAGE_FILE = "training_state.json"
STATE_TENSORS_FILE = "training_state.safetensors"
# settings that may differ between a run and its resumption without changing the result
RUN_CONTROL_FIELDS = {"resume", "device", "num_threads", "log_every", "progress"}


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message is one line."""


@dataclass
class TrainConfig(datalib.DataSpec):
    # data: the `DataSpec` fields (clean + noise folders mixed on the fly, or paired noisy + clean folders), then
    val_items: int = 32
    val_seconds: float = 4.0
    segment_seconds: float = 2.0
    snr_range: tuple[float, float] = (-5.0, 20.0)
    gain_range: tuple[float, float] = (-10.0, 6.0)
    # model: a preset size, or `init` (model folder or model name) to fine-tune
    model: str | None = None
    init: str | None = None
    # optimisation; `steps` is per stage
    stage: str = "both"
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 100
    schedule: str = "cosine"  # or "constant" (after warmup)
    min_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # losses: stage 1 = sum of conventional terms; stage 2 = mal_weight * MAL
    #   + conventional_weight * (the same conventional terms) + deep_feature_weight * deep-feature loss
    loss_weights: dict = field(default_factory=lambda: {"mrstft": 1.0, "spectral": 1.0})
    mal_encoder: str = "frozen"
    mal_layers: list | None = None  # None: the bottleneck, or the top front layer for frozen-fe
    mal_weight: float = 1.0
    conventional_weight: float = 0.0
    deep_feature_model: str | None = None  # local transformers model folder, or "tiny-random" (tests)
    deep_feature_weight: float = 0.0
    # run
    out: str = "runs/denoise"
    resume: bool = False
    device: str = "cpu"
    seed: int = 0
    val_every: int = 500
    save_every: int | None = None  # default: at every validation
    log_every: int = 20
    best_metric: str = "si_sdr"  # or "pesq"
    num_threads: int | None = None
    export_onnx: bool = True
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TrainingError(f"unknown training settings {sorted(unknown)}")
        values = dict(values)
        for name in ("snr_range", "gain_range"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def stages(self) -> list[str]:
        if self.stage not in ("1", "2", "both"):
            raise TrainingError(f"stage must be 1, 2 or both, not {self.stage!r}")
        return ["1", "2"] if self.stage == "both" else [self.stage]


# ---------------------------------------------------------------------------------------------- setup


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr_fraction * lr`` (or constant)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.min_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def initial_model(config: TrainConfig) -> DenoiseNet:
    """A fresh preset model (seeded), or the `init` model to fine-tune."""
    if config.init is None:
        torch.manual_seed(config.seed)
        return DenoiseNet(ModelConfig.preset(config.model or "small"))
    from denoise.registry import resolve_model

    model = load_model(resolve_model(config.init))
    if config.model and config.model != model.config.size:
        raise TrainingError(f"{config.init}: is a {model.config.size!r} model, but --model {config.model} was asked; "
                            "drop --model to fine-tune it as it is")
    return model.train()


def make_optimizer(model: DenoiseNet, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


class StageLoss:
    """The loss of one stage: ``terms(noisy_spec, enhanced_spec, clean_spec, clean_wave) -> {name: weighted term}``."""

    def __init__(self, stage: str, model: DenoiseNet, config: TrainConfig, stage1_model: DenoiseNet | None):
        self.conventional = ConventionalLoss(config.loss_weights)
        self.conventional_weight = 1.0 if stage == "1" else config.conventional_weight
        self.mal = self.deep = None
        if stage == "2" and config.mal_weight:
            source = model if config.mal_encoder == "dynamic" else stage1_model
            self.mal = ModelAsLoss(source, encoder=config.mal_encoder, layers=config.mal_layers)
        if stage == "2" and config.deep_feature_weight:
            from denoise.deep_feature import DeepFeatureLoss

            self.deep = DeepFeatureLoss(config.deep_feature_model).to(next(model.parameters()).device)
        self.config = config

    def terms(self, enhanced_spec, clean_spec, clean_wave) -> dict[str, torch.Tensor]:
        terms = {}
        enhanced_wave = None
        if self.deep is not None or (self.conventional_weight and {"mrstft", "sisdr"} & set(self.conventional.weights)):
            enhanced_wave = torch_istft(enhanced_spec, clean_wave.shape[-1])
        if self.conventional_weight:
            for name, value in self.conventional(enhanced_spec, clean_spec, enhanced_wave, clean_wave).items():
                terms[name] = self.conventional_weight * value
        if self.mal is not None:
            terms["mal"] = self.config.mal_weight * self.mal(enhanced_spec, clean_spec)
        if self.deep is not None:
            terms["deep"] = self.config.deep_feature_weight * self.deep(enhanced_wave, clean_wave)
        if not terms:
            raise TrainingError("all loss weights are zero: nothing to train")
        return terms


# ---------------------------------------------------------------------------------------------- checkpoints


def replace_folder(temp: Path, target: Path) -> None:
    """Move a completely written folder into place; the previous one is removed only afterwards."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(temp, target)
    shutil.rmtree(old, ignore_errors=True)


def save_folder(model: DenoiseNet, target: Path, metadata: dict, write_extra=None) -> None:
    temp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    save_model(model, temp, metadata)
    if write_extra:
        write_extra(temp)
    replace_folder(temp, target)


def save_checkpoint(target: Path, model, optimizer, config: TrainConfig, progress: dict) -> None:
    """Model folder + optimizer and RNG tensors (safetensors) + step counters and settings (JSON)."""
    from safetensors.torch import save_file

    optimizer_state = optimizer.state_dict()
    tensors = {f"optimizer.{index}.{key}": value.detach().cpu().contiguous()
               for index, state in optimizer_state["state"].items() for key, value in state.items()}
    tensors["rng.torch"] = torch.get_rng_state()

    def write_state(folder: Path) -> None:
        save_file(tensors, str(folder / STATE_TENSORS_FILE))
        document = {"progress": progress, "param_groups": optimizer_state["param_groups"], "config": config.to_dict()}
        (folder / STAGE_FILE).write_text(json.dumps(document, indent=2) + "\n")

    save_folder(model, target, {"training": {"stage": progress["stage"], "step": progress["step"]}}, write_state)


def load_checkpoint(folder: Path, optimizer) -> dict:
    """Restore optimizer and RNG from ``folder``; returns the saved progress counters."""
    from safetensors.torch import load_file

    document = json.loads((folder / STAGE_FILE).read_text())
    tensors = load_file(str(folder / STATE_TENSORS_FILE))
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": document["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return document["progress"]


def check_resumable(out: Path, config: TrainConfig) -> dict:
    path = out / "last" / STAGE_FILE
    if not path.is_file():
        raise TrainingError(f"{out}: nothing to resume (no last/{STAGE_FILE})")
    saved = json.loads(path.read_text())["config"]
    current = config.to_dict()
    differing = sorted(k for k in current if k not in RUN_CONTROL_FIELDS and _jsonable(current[k]) != saved.get(k))
    if differing:
        listed = ", ".join(f"{k}={saved.get(k)!r} (now {current[k]!r})" for k in differing)
        raise TrainingError(f"{out}: cannot resume with different settings: {listed}")
    return saved


def _jsonable(value):
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------------------------------------- validation


def validate(model: DenoiseNet, noisy: np.ndarray, clean: np.ndarray, device) -> dict:
    """SI-SDR (and PESQ-WB / STOI when installed) of the enhanced validation mixtures, plus the input SI-SDR."""
    model.eval()
    with torch.no_grad():
        noisy_t = torch.from_numpy(noisy).to(device)
        enhanced = torch_istft(model.enhance(torch_stft(noisy_t)), noisy.shape[-1]).cpu()
    model.train()
    clean_t = torch.from_numpy(clean)
    metrics = {"val_si_sdr": float(si_sdr(enhanced, clean_t).mean()),
               "val_si_sdr_input": float(si_sdr(torch.from_numpy(noisy), clean_t).mean())}
    metrics.update(perceptual_metrics(enhanced.numpy(), clean))
    return metrics


def perceptual_metrics(enhanced: np.ndarray, clean: np.ndarray) -> dict:
    metrics = {}
    try:
        from pesq import pesq

        scores = []
        for est, ref in zip(enhanced, clean):
            try:
                scores.append(pesq(datalib.SAMPLE_RATE, ref, est, "wb"))
            except Exception:  # pesq refuses items without detectable speech
                pass
        if scores:
            metrics["val_pesq"] = float(np.mean(scores))
    except ImportError:
        pass
    try:
        from pystoi import stoi

        metrics["val_stoi"] = float(np.mean([stoi(ref, est, datalib.SAMPLE_RATE) for est, ref in zip(enhanced, clean)]))
    except ImportError:
        pass
    return metrics


# ---------------------------------------------------------------------------------------------- the loop


def train(config: TrainConfig, stop_at: tuple[str, int] | None = None) -> Path:
    """Run (or resume) training; returns the output folder. ``stop_at=(stage, step)`` (tests): stop there,
    as an interrupted run would."""
    rank, world_size = distributed_setup(config)
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if config.device == "cuda" else "cpu")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.out)
    stages = config.stages()
    if config.batch_size % world_size:
        raise TrainingError(f"batch size {config.batch_size} is not divisible by {world_size} processes")
    if "2" in stages and config.stage == "2" and not config.init and not config.resume:
        raise TrainingError("--stage 2 needs --init (a stage-1 model); or use --stage both")
    if config.resume:
        check_resumable(out, config)
    elif (out / "last").exists():
        raise TrainingError(f"{out}: already holds a training run; use --resume to continue it, or another --out")

    mixing = datalib.MixingConfig(config.segment_seconds, tuple(config.snr_range), tuple(config.gain_range))
    try:
        train_set, val_source = datalib.build_datasets(config, mixing, VALIDATION_SEED)
    except datalib.DataError as error:
        raise TrainingError(str(error)) from None
    val_noisy, val_clean = datalib.validation_set(val_source, VALIDATION_SEED, config.val_items, config.val_seconds)

    model = (load_model(out / "last") if config.resume else initial_model(config)).to(device).train()
    if "2" in stages and config.mal_weight:  # fail on a wrong layer name now, not after stage 1
        ModelAsLoss(model, encoder=config.mal_encoder, layers=config.mal_layers)
    optimizer = make_optimizer(model, config)
    if config.resume:
        progress = load_checkpoint(out / "last", optimizer)
    else:
        progress = {"stage": stages[0], "step": 0, "best": None}
    broadcast_parameters(model, world_size)
    log = MetricsLog(out / "metrics.jsonl", enabled=rank == 0)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        log.write({"event": "resume" if config.resume else "start", **progress, "world_size": world_size})

    for stage in stages[stages.index(progress["stage"]):]:
        if stage != progress["stage"]:  # a new stage starts from the previous one's final weights
            progress = {"stage": stage, "step": 0, "best": None}
            optimizer = make_optimizer(model, config)
        stage1_model = None
        if stage == "2":
            if not (out / "stage1").is_dir() and rank == 0:
                save_folder(model, out / "stage1", {"training": {"stage": "1", "final": True}})
            barrier(world_size)
            stage1_model = load_model(out / "stage1").to(device)
        loss_fn = StageLoss(stage, model, config, stage1_model)
        finished = run_stage(stage, model, optimizer, loss_fn, train_set, (val_noisy, val_clean), progress,
                             config, out, log, rank, world_size, device, stop_at)
        if not finished:
            return out
    if rank == 0 and config.export_onnx:
        export_best(out)
    barrier(world_size)
    return out


def run_stage(stage, model, optimizer, loss_fn, train_set, validation, progress, config, out, log, rank,
              world_size, device, stop_at) -> bool:
    """Train one stage from ``progress["step"]`` to ``config.steps``; False when stopped early by ``stop_at``."""
    data_seed = config.seed * 10 + int(stage)
    save_every = config.save_every or config.val_every
    model.train()
    with progress_bar(enabled=rank == 0 and config.progress) as bar:
        task = bar.add_task(f"stage {stage}", total=config.steps, completed=progress["step"], loss=float("nan"), rate=0.0)
        window_start, window_steps = time.perf_counter(), 0
        while progress["step"] < config.steps:
            if stop_at is not None and (stage, progress["step"]) == tuple(stop_at):
                return False
            step = progress["step"]
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            noisy, clean = datalib.make_batch(train_set, data_seed, step, config.batch_size, rank, world_size)
            noisy, clean = torch.from_numpy(noisy).to(device), torch.from_numpy(clean).to(device)
            clean_spec = torch_stft(clean)
            enhanced_spec = model.enhance(torch_stft(noisy))
            terms = loss_fn.terms(enhanced_spec, clean_spec, clean)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(model, world_size)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            values = all_reduce_mean(torch.stack([loss.detach(), grad_norm.detach(), *(t.detach() for t in terms.values())]),
                                     world_size)
            if not torch.isfinite(values[:2]).all():
                kept = f"last good checkpoint kept in {out / 'last'}" if (out / "last").is_dir() else "no checkpoint written yet"
                what = "loss" if not torch.isfinite(values[0]) else "gradient norm"
                raise TrainingError(f"stage {stage} step {step + 1}: {what} is {float(values[0 if what == 'loss' else 1])}; "
                                    f"stopped ({kept}); try a lower --lr")
            optimizer.step()
            progress["step"] = step = step + 1
            window_steps += 1
            if rank == 0 and (step % config.log_every == 0 or step == config.steps):
                rate = window_steps / (time.perf_counter() - window_start)
                window_start, window_steps = time.perf_counter(), 0
                term_values = {name: round(float(v), 5) for name, v in zip(terms, values[2:])}
                log.write({"stage": stage, "step": step, "loss": round(float(values[0]), 5), **term_values,
                           "grad_norm": round(float(values[1]), 4), "lr": lr, "steps_per_s": round(rate, 3)})
                bar.update(task, loss=float(values[0]), rate=rate)
            bar.update(task, completed=step)
            if rank == 0 and (step % config.val_every == 0 or step == config.steps):
                metrics = validate(model, *validation, device)
                log.write({"stage": stage, "step": step, **metrics})
                score = metrics.get(f"val_{config.best_metric}", metrics["val_si_sdr"])
                if progress["best"] is None or score > progress["best"]:
                    progress["best"] = score
                    save_folder(model, out / "best", {"training": {"stage": stage, "step": step, **metrics}})
            if rank == 0 and (step % save_every == 0 or step == config.steps):
                save_checkpoint(out / "last", model, optimizer, config, progress)
    return True


def export_best(out: Path) -> None:
    from denoise.export import export_onnx

    export_onnx(load_model(out / "best"), out / "best")  # also records the graphs' sha256 in config.json


class MetricsLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"time": round(time.time(), 2), **record}) + "\n")


def progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.2f} steps/s"),
        TimeRemainingColumn(), disable=not enabled,
    )


# ---------------------------------------------------------------------------------------------- distributed


def distributed_setup(config: TrainConfig) -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when started by torchrun with several processes."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if config.device == "cuda" else "gloo")
    if config.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def broadcast_parameters(model, world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)


def average_gradients(model, world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        for parameter in model.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad /= world_size


def all_reduce_mean(values: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
        values = values / world_size
    return values


def barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
