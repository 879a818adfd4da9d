"""`denoise train`: train or fine-tune a model (stage 1 conventional losses, stage 2 Model as Loss)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from denoise.commands.common import fail

EPILOG = """\
[bold]Examples[/]

  Train a small model from scratch, both stages, 2000 steps each:

    denoise train --clean speech/ --noise noise/ --out runs/small

  Fine-tune the bundled model on your own recordings (paired folders, same relative names):

    denoise train --noisy mine/noisy/ --clean mine/clean/ --init small --stage 2 --steps 500 --out runs/mine

  Stage 2 with the dynamic loss encoder over all layers, plus a small conventional term:

    denoise train --clean speech/ --noise noise/ --mal-encoder dynamic --mal-layers all \\
        --loss mrstft=1,spectral=1,mal=1 --conventional-weight 0.1 --out runs/dyn

  Continue an interrupted run (same settings):  add --resume

  Several processes (one share of each batch per process):

    torchrun --nproc_per_node 2 -m denoise.cli train --clean speech/ --noise noise/ --out runs/ddp

Output: OUT/metrics.jsonl, OUT/last/ (resumable checkpoint), OUT/best/ (best validation model with
model.onnx, usable as `denoise -m OUT/best file.wav`), OUT/stage1/ (final stage-1 model).
"""


def parse_loss_weights(text: str) -> dict[str, float]:
    """``"mrstft=1,spectral=1,mal=1"`` -> {name: weight}."""
    from denoise.losses import CONVENTIONAL_LOSSES

    known = (*CONVENTIONAL_LOSSES, "mal", "deep")
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in known:
            raise ValueError(f"--loss: unknown term {name!r}; choose from {', '.join(known)}")
        try:
            weights[name] = float(value) if value else 1.0
        except ValueError:
            raise ValueError(f"--loss: {item!r} is not name=number") from None
    return weights


def train(
    clean: Path = typer.Option(None, "--clean", help="Folder of clean speech (any depth, any format soundfile reads)."),
    noise: Path = typer.Option(None, "--noise", help="Folder of noise recordings, mixed with --clean on the fly."),
    noisy: Path = typer.Option(None, "--noisy", help="Folder of noisy files paired with --clean by relative name "
                                                     "(instead of --noise)."),
    rir: Path = typer.Option(None, "--rir", help="Folder of room impulse responses: half the examples get "
                                                 "reverberation; the target keeps only the first 50 ms."),
    val_clean: Path = typer.Option(None, "--val-clean", help="Validation speech (default: 5% of --clean files)."),
    val_noise: Path = typer.Option(None, "--val-noise", help="Validation noise (default: 5% of --noise files)."),
    val_noisy: Path = typer.Option(None, "--val-noisy", help="Validation noisy files, paired with --val-clean."),
    model: str = typer.Option(None, "--model", help="Network size for a new model: small | base (default small)."),
    init: str = typer.Option(None, "--init", help="Start from this model (folder or model name) to fine-tune."),
    stage: str = typer.Option("both", "--stage", help="1 (conventional loss), 2 (Model as Loss, needs --init) or both."),
    mal_encoder: str = typer.Option("frozen", "--mal-encoder", help="Stage-2 loss encoder: frozen | frozen-fe | dynamic."),
    mal_layers: str = typer.Option(None, "--mal-layers",
                                   help="Encoder layers compared by MAL: bottleneck | all | comma list (input,conv1,...,bottleneck). "
                                        "Default: the bottleneck; with frozen-fe, the top frozen front layer."),
    loss: str = typer.Option("mrstft=1,spectral=1,mal=1", "--loss",
                             help="Loss weights: conventional terms (mrstft, spectral, sisdr) used in stage 1; "
                                  "mal and deep (deep-feature loss) in stage 2."),
    conventional_weight: float = typer.Option(0.0, "--conventional-weight",
                                              help="Stage 2: weight of the conventional terms beside MAL."),
    deep_feature_model: str = typer.Option(None, "--deep-feature-model",
                                           help="Deep-feature loss model (deep=W in --loss): resemblyzer (pip install Resemblyzer) "
                                                "or a local wav2vec2/WavLM folder."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Optimizer steps per stage."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Examples per step (all processes together)."),
    segment_seconds: float = typer.Option(2.0, "--segment-seconds", min=0.1, help="Length of each training example."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Peak learning rate (AdamW, warmup then cosine decay)."),
    out: Path = typer.Option(Path("runs/denoise"), "--out", "-o", help="Output folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed for initial weights and data sampling."),
    val_every: int = typer.Option(500, "--val-every", min=1, help="Validate (and save last/, best/) every N steps."),
    val_items: int = typer.Option(32, "--val-items", min=1, help="Number of fixed validation mixtures (4 s each)."),
    log_every: int = typer.Option(20, "--log-every", min=1, help="Write a metrics.jsonl line every N steps."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: torch's choice)."),
) -> None:
    """Train a denoiser: stage 1 with conventional losses, stage 2 with [bold]Model as Loss[/] (its own encoder
    as the loss). Data: speech + noise folders mixed on the fly at random SNR (-5..20 dB) and level, or
    paired noisy/clean folders. Resumable bit-for-bit; Ctrl-C keeps the last checkpoint."""
    try:
        weights = parse_loss_weights(loss)
    except ValueError as error:
        fail(str(error))
    if device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, not {device!r}")
    if model is not None and model not in ("small", "base"):
        fail(f"--model must be small or base, not {model!r}")
    if stage not in ("1", "2", "both"):
        fail(f"--stage must be 1, 2 or both, not {stage!r}")
    if mal_encoder not in ("frozen", "frozen-fe", "dynamic"):
        fail(f"--mal-encoder must be frozen, frozen-fe or dynamic, not {mal_encoder!r}")
    if noise and noisy:
        fail("--noise (mix on the fly) and --noisy (paired folders) exclude each other; give one")
    if weights.get("deep") and not deep_feature_model:
        fail("--loss deep=... needs --deep-feature-model resemblyzer|DIR (DIR: a local wav2vec2/WavLM folder)")
    try:
        import torch  # noqa: F401  (training needs the `train` extra)
    except ImportError:
        fail("training needs torch: pip install 'denoise[train]'")
    from denoise.checkpoint import CheckpointError
    from denoise.data import DataError
    from denoise.train import TrainConfig, TrainingError, train as run_training

    config = TrainConfig(
        clean=_text(clean), noise=_text(noise), noisy=_text(noisy), rir=_text(rir), val_clean=_text(val_clean),
        val_noise=_text(val_noise), val_noisy=_text(val_noisy), model=model, init=init, stage=stage, steps=steps,
        batch_size=batch_size, segment_seconds=segment_seconds, lr=lr,
        loss_weights={k: v for k, v in weights.items() if k not in ("mal", "deep")} or TrainConfig().loss_weights,
        mal_encoder=mal_encoder, mal_layers=[name.strip() for name in mal_layers.split(",") if name.strip()] if mal_layers else None,
        mal_weight=weights.get("mal", 1.0), conventional_weight=conventional_weight,
        deep_feature_model=deep_feature_model, deep_feature_weight=weights.get("deep", 0.0),
        out=str(out), resume=resume, device=device, seed=seed, val_every=val_every, val_items=val_items,
        log_every=log_every,
        num_threads=threads,
    )
    try:
        folder = run_training(config)
    except (TrainingError, DataError, CheckpointError) as error:
        fail(str(error))
    except ValueError as error:  # e.g. a MAL layer name the model does not have
        fail(str(error))
    except KeyboardInterrupt:
        fail(f"interrupted; continue with the same command plus --resume (checkpoint in {out / 'last'})", code=130)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, only the first process reports
        typer.echo(f"done: best model in {folder / 'best'}, metrics in {folder / 'metrics.jsonl'}")


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def register(app: typer.Typer) -> None:
    app.command(name="train", epilog=EPILOG)(train)
