#!/usr/bin/env python3
"""Regenerate the small audio fixtures in tests/data/.

Speech fixtures are synthesised with espeak-ng (GPL-3+ program; its output is
not restricted).  Noise fixtures are 4 s excerpts of real recordings from
Debian game-data packages unpacked by scripts/prepare_data.py (--raw dir);
see tests/data/README.md for origins and licences.

Usage::

    python scripts/make_test_fixtures.py --raw data/raw --out tests/data

All outputs are 16 kHz mono 16-bit FLAC.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000

# name -> (espeak-ng voice, text)
SPEECH = {
    "speech_en.flac": ("en", "The quick brown fox jumps over the lazy dog, "
                             "while the birds sing outside."),
    "speech_en2.flac": ("en-us", "Please call Stella and ask her to bring "
                                 "these things."),
    "speech_de.flac": ("de", "Guten Morgen, wie geht es Ihnen heute? "
                             "Das Wetter ist schön."),
}

# name -> (package, path inside the unpacked package, start s, length s)
NOISE = {
    "noise_rain.flac": ("megaglest-data",
                        "usr/share/games/megaglest/tilesets/birch_forest/"
                        "sounds/rain.ogg", 2.0, 4.0),
    "noise_crowd.flac": ("lincity-ng-data",
                         "usr/share/games/lincity-ng/sounds/SportsCroud1.wav",
                         0.0, 4.0),
    "noise_campfire.flac": ("wesnoth-1.16-data",
                            "usr/share/games/wesnoth/1.16/data/core/sounds/"
                            "ambient/campfire.ogg", 1.0, 4.0),
}


def to_16k_mono(audio: np.ndarray, sr: int) -> np.ndarray:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    return soxr.resample(mono, sr, SR, quality="HQ") if sr != SR else mono


def normalise_peak(x: np.ndarray, peak_db: float = -3.0) -> np.ndarray:
    return x * (10 ** (peak_db / 20) / (np.max(np.abs(x)) + 1e-12))


def fade(x: np.ndarray, ms: float = 10.0) -> np.ndarray:
    n = int(SR * ms / 1000)
    ramp = np.linspace(0.0, 1.0, n)
    x = x.copy()
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
    return x


def synth(voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text],
                       check=True)
        audio, sr = sf.read(str(wav), dtype="float64")
    return normalise_peak(to_16k_mono(audio, sr))


def excerpt(path: Path, start_s: float, length_s: float) -> np.ndarray:
    audio, sr = sf.read(str(path), dtype="float64")
    x = to_16k_mono(audio, sr)
    seg = x[int(start_s * SR): int((start_s + length_s) * SR)]
    return fade(normalise_peak(seg - seg.mean()))


def write_flac(path: Path, x: np.ndarray) -> None:
    sf.write(str(path), x.astype(np.float32), SR, format="FLAC",
             subtype="PCM_16")
    print(f"{path}  {len(x) / SR:.2f} s  {path.stat().st_size / 1e3:.0f} kB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--raw", type=Path, default=Path("data/raw"),
                   help="packages unpacked by scripts/prepare_data.py")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parents[1] / "tests/data")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (voice, text) in SPEECH.items():
        write_flac(args.out / name, synth(voice, text))
    for name, (package, rel, start, length) in NOISE.items():
        write_flac(args.out / name, excerpt(args.raw / package / rel, start,
                                            length))
    return 0


if __name__ == "__main__":
    sys.exit(main())
