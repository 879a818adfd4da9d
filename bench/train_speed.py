"""Training speed: optimizer steps per second (batch 8 x 2 s) for small/base, stage 1 and stage 2 (MAL).

    python bench/train_speed.py --threads 1 [--steps 20] [--batch-size 8]

Runs the same step as `denoise.train` (STFT, model, StageLoss, backward, clipping, AdamW) on mixtures
of the tests/data speech and noise; on cuda too when available.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from denoise import data
from denoise.config import ModelConfig
from denoise.model import DenoiseNet
from denoise.stft import torch_stft
from denoise.train import StageLoss, TrainConfig

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def steps_per_second(size: str, stage: str, device: str, batch_size: int, steps: int, dataset) -> float:
    torch.manual_seed(0)
    model = DenoiseNet(ModelConfig.preset(size)).to(device)
    config = TrainConfig(mal_encoder="frozen")
    loss_fn = StageLoss(stage, model, config, model if stage == "2" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = [data.make_batch(dataset, 0, step, batch_size) for step in range(steps + 2)]
    for index, (noisy, clean) in enumerate(batches):
        if index == 2:  # two warm-up steps
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        noisy, clean = torch.from_numpy(noisy).to(device), torch.from_numpy(clean).to(device)
        terms = loss_fn.terms(model.enhance(torch_stft(noisy)), torch_stft(clean), clean)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = data.MixingDataset(data.load_pool(DATA, sorted(DATA.glob("speech_*.flac"))),
                                 data.load_pool(DATA, sorted(DATA.glob("noise_*.flac"))))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"batch {args.batch_size} x {dataset.config.segment_seconds:g} s, {args.steps} timed steps, "
          f"torch {torch.__version__}, cpu threads {args.threads}")
    print(f"{'device':<8}{'model':<8}{'stage':<20}{'steps/s':>10}{'audio s/s':>12}")
    for device in devices:
        for size in ("small", "base"):
            for stage, label in (("1", "1 (mrstft+spec)"), ("2", "2 (MAL frozen)")):
                rate = steps_per_second(size, stage, device, args.batch_size, args.steps, dataset)
                audio = rate * args.batch_size * dataset.config.segment_seconds
                print(f"{device:<8}{size:<8}{label:<20}{rate:>10.2f}{audio:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
