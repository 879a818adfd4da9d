#!/usr/bin/env python3
"""Build the speech / noise training, validation, test and out-of-domain sets.

Sources are Debian game-data packages holding real recorded speech and real
ambient noise (see shared/data/README.md).  The script

1. downloads missing packages with ``apt-get download`` into ``--debs``,
2. unpacks their audio and copyright files into ``--raw``,
3. selects speech / noise files per source (music and speech-bearing effects
   are skipped), de-duplicates them by content hash,
4. converts them to 16 kHz mono (soxr 'HQ'), trims silence, high-passes and
   level-normalises speech, peak-normalises noise,
5. splits in-domain material by file with a fixed seed and writes 16 kHz mono
   Ogg Vorbis under ``--out/{train,val,test,ood}/{speech,noise}``,
6. builds two fixed paired evaluation sets (``testset_indomain``,
   ``testset_ood``) of 16-bit WAV clean/noisy pairs at known SNRs,
7. writes ``manifest.json`` (per-file provenance, totals, licences).

Usage::

    python scripts/prepare_data.py --debs data/debs --raw data/raw \
        --out data/prepared

Dependencies: numpy, soundfile, soxr (scipy optional, for the high-pass).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import soxr

SR = 16000
FRAME = 320  # 20 ms analysis frames at 16 kHz
SPLITS = ("train", "val", "test")
SPEECH_FRACTIONS = (0.90, 0.05, 0.05)
NOISE_FRACTIONS = (0.85, 0.075, 0.075)
TESTSET_SNRS = (-5, 0, 5, 10, 15)
TAR_PATTERNS = ("*.ogg", "*.wav", "*.flac", "*copyright*")


# --------------------------------------------------------------------------
# Source definitions
# --------------------------------------------------------------------------
@dataclass
class Source:
    prefix: str            # file-name prefix in the prepared set
    package: str           # Debian package
    kind: str              # "speech" or "noise"
    domain: str            # "in" (train/val/test) or "ood"
    pattern: str           # regex on the path inside the package
    exclude: tuple = ()    # regexes; a match skips the file
    min_raw_s: float = 0.0  # skip files shorter than this before processing
    max_files: int = 0     # 0 = all; otherwise seeded subsample (OOD)
    optional: bool = False  # skip silently if the package cannot be fetched
    notes: str = ""


MUSIC = r"(^|/)(music|Music)/"

# SuperTuxKart: effects that are ambience-like noise (no speech, no music).
STK_NOISE = (
    "lenautile_restaurant", "river_loop", "waterfall_loop_2", "exotic-birds",
    "exotic-birds_2", "steamLocomotive", "fireworks_show", "static-radio",
    "rain", "thunder", "airplane_jetEngine", "machine_sound", "engine_small",
    "engine_large", "clock", "spaceship", "spaceship_engine", "tractor_beam",
    "sheep", "cow", "metal_clang", "break", "splash",
)

SOURCES = [
    # ---- in-domain speech
    Source("fillets-cs", "fillets-ng-data-cs", "speech", "in",
           r"/sound/.+/cs/[^/]+\.ogg$", notes="Czech voice acting"),
    Source("fillets", "fillets-ng-data", "speech", "in",
           r"/sound/.+/[a-z]{2}/[^/]+\.ogg$", exclude=(MUSIC,), optional=True,
           notes="remaining speech of the same game (mostly English)"),
    Source("hedgewars", "hedgewars-data", "speech", "in",
           r"/Sounds/voices/.+\.(ogg|wav)$", notes="acted exclamations"),
    # ---- in-domain noise
    Source("megaglest", "megaglest-data", "noise", "in",
           r"/tilesets/[^/]+/sounds/[^/]+\.(ogg|wav)$",
           exclude=(r"good_morning",), notes="tileset ambience loops"),
    Source("stk", "supertuxkart-data", "noise", "in",
           r"/(sfx|tracks/[^/]+|library/[^/]+)/(%s)\.ogg$" % "|".join(
               re.escape(s) for s in STK_NOISE),
           exclude=(MUSIC, r"airport_pa", r"speech",
                    r"tracks/black_forest/steamLocomotive"),  # copy of library/
           notes="allow-list of ambience effects"),
    Source("widelands", "widelands-data", "noise", "in",
           r"/data/sound/.+\.(ogg|wav)$", exclude=(MUSIC,), min_raw_s=4.0,
           notes="workshop/animal/tavern sounds >= 4 s"),
    # ---- out-of-domain speech
    Source("fillets-nl", "fillets-ng-data-nl", "speech", "ood",
           r"/sound/.+/nl/[^/]+\.ogg$", max_files=300,
           notes="Dutch voice acting, stereo with reverb"),
    Source("ktuberling", "ktuberling-data", "speech", "ood",
           r"/ktuberling/sounds/[^/]+/[^/]+\.(ogg|wav)$", max_files=250,
           notes="single words, many languages"),
    # ---- out-of-domain noise
    Source("lincity", "lincity-ng-data", "noise", "ood",
           r"/lincity-ng/sounds/[^/]+\.wav$", exclude=(MUSIC,),
           notes="city / industry / traffic / crowd"),
    Source("wesnoth", "wesnoth-1.16-data", "noise", "ood",
           r"/sounds/ambient/[^/]+\.ogg$", notes="ambient loops"),
]


# --------------------------------------------------------------------------
# Fetching and unpacking
# --------------------------------------------------------------------------
def find_deb(package: str, debs: Path) -> Path | None:
    hits = sorted(debs.glob(f"{package}_*.deb"))
    return hits[-1] if hits else None


def ensure_deb(package: str, debs: Path) -> Path | None:
    """Return the .deb for `package`, downloading it with apt-get if needed."""
    deb = find_deb(package, debs)
    if deb is None:
        debs.mkdir(parents=True, exist_ok=True)
        print(f"[fetch] apt-get download {package}", flush=True)
        res = subprocess.run(["apt-get", "download", package], cwd=debs,
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(f"[fetch] failed: {res.stderr.strip()[:300]}", flush=True)
        deb = find_deb(package, debs)
    return deb


def unpack_deb(deb: Path, dest: Path) -> None:
    """Extract audio and copyright files; cached by a marker file."""
    marker = dest / ".unpacked"
    if marker.exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    print(f"[unpack] {deb.name} -> {dest}", flush=True)
    cmd = (f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{dest}' --wildcards "
           + " ".join(f"'{p}'" for p in TAR_PATTERNS))
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    # tar exits non-zero when one of the patterns is absent; that is fine.
    errors = [ln for ln in res.stderr.splitlines()
              if "Not found in archive" not in ln
              and "Exiting with failure status" not in ln]
    if errors:
        raise RuntimeError(f"unpacking {deb} failed: {errors[:5]}")
    marker.write_text(deb.name + "\n")


def package_root(package: str, debs: Path, raw: Path) -> Path | None:
    deb = ensure_deb(package, debs)
    if deb is None:
        return None
    unpack_deb(deb, raw / package)
    return raw / package


# --------------------------------------------------------------------------
# Licences
# --------------------------------------------------------------------------
LICENSE_PATTERNS = {
    "GPL-2": r"GPL-?2|GNU General Public License,? [Vv]ersion 2",
    "GPL-3": r"GPL-?3|GNU General Public License,? [Vv]ersion 3",
    "GPL (version unspecified)": r"\bGPL\b|GNU General Public License",
    "LGPL": r"LGPL|Lesser General Public",
    "CC-BY-SA": r"CC-BY-SA|Attribution-?Share-?Alike|Attribution Sharealike",
    "CC-BY": r"CC-BY-\d|CC-BY\b",
    "CC0": r"CC0",
    "public domain": r"[Pp]ublic[- ][Dd]omain",
    "BSD": r"BSD",
    "MIT": r"\bMIT\b",
    "GFDL": r"GFDL",
}


def summarise_license(root: Path, package: str) -> dict:
    path = root / "usr/share/doc" / package / "copyright"
    if not path.exists():
        hits = sorted(root.rglob("copyright"))
        path = hits[0] if hits else None
    if path is None:
        return {"copyright_file": None, "licenses": []}
    text = path.read_text(errors="replace")
    dep5 = sorted({m.strip() for m in re.findall(r"^License:[ \t]*(\S.*)$",
                                                 text, re.M)})
    found = [name for name, pat in LICENSE_PATTERNS.items()
             if re.search(pat, text)]
    return {"copyright_file": str(path.relative_to(root)),
            "dep5_license_fields": dep5, "licenses_mentioned": found}


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------
def file_hash(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def select_files(src: Source, root: Path, seen: set, skipped: dict) -> list:
    """Paths inside `root` matching the source rules, de-duplicated."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = "/" + str(path.relative_to(root))
        if not re.search(src.pattern, rel):
            continue
        if any(re.search(x, rel) for x in src.exclude):
            skipped["excluded"] = skipped.get("excluded", 0) + 1
            continue
        digest = file_hash(path)
        if digest in seen:
            skipped["duplicate"] = skipped.get("duplicate", 0) + 1
            continue
        seen.add(digest)
        if src.min_raw_s and sf.info(str(path)).duration < src.min_raw_s:
            skipped["raw_too_short"] = skipped.get("raw_too_short", 0) + 1
            continue
        out.append(path)
    return out


# --------------------------------------------------------------------------
# Signal processing
# --------------------------------------------------------------------------
def load_mono_16k(path: Path) -> np.ndarray:
    audio, sr = sf.read(str(path), dtype="float64", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != SR:
        mono = soxr.resample(mono, sr, SR, quality="HQ")
    return mono.astype(np.float64)


def highpass(x: np.ndarray, cutoff: float = 60.0) -> np.ndarray:
    """2nd-order Butterworth high-pass (scipy) or 1st-order fallback."""
    try:
        from scipy.signal import butter, sosfilt
        return sosfilt(butter(2, cutoff, "highpass", fs=SR, output="sos"), x)
    except ImportError:
        a = np.exp(-2 * np.pi * cutoff / SR)
        y = np.empty_like(x)
        prev_x = prev_y = 0.0
        for i, v in enumerate(x):  # y[n] = a*(y[n-1] + x[n] - x[n-1])
            prev_y = a * (prev_y + v - prev_x)
            prev_x = v
            y[i] = prev_y
        return y


def frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME
    if n == 0:
        return np.full(1, 10 * np.log10(np.mean(x ** 2) + 1e-12))
    frames = x[: n * FRAME].reshape(n, FRAME)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def trim_silence(x: np.ndarray, rel_db: float, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing frames more than `rel_db` below the loudest."""
    db = frame_db(x)
    active = np.flatnonzero(db > db.max() - rel_db)
    if len(active) == 0:
        return x[:0]
    pad = int(pad_s * SR)
    start = max(0, active[0] * FRAME - pad)
    end = min(len(x), (active[-1] + 1) * FRAME + pad)
    return x[start:end]


def active_rms(x: np.ndarray, rel_db: float = 40.0) -> float:
    """RMS over frames within `rel_db` of the loudest frame."""
    db = frame_db(x)
    n = len(x) // FRAME
    if n == 0:
        return float(np.sqrt(np.mean(x ** 2) + 1e-12))
    frames = x[: n * FRAME].reshape(n, FRAME)
    keep = frames[db > db.max() - rel_db]
    return float(np.sqrt(np.mean(keep ** 2) + 1e-12))


def limit_peak(x: np.ndarray, peak: float = 0.99) -> np.ndarray:
    m = np.max(np.abs(x)) if len(x) else 0.0
    return x * (peak / m) if m > peak else x


def process_speech(x: np.ndarray, level_db: float) -> np.ndarray:
    x = highpass(x)
    x = trim_silence(x, rel_db=40.0)
    if len(x) == 0:
        return x
    x = x * (10 ** (level_db / 20) / active_rms(x))
    return limit_peak(x)


def process_noise(x: np.ndarray, peak_db: float) -> np.ndarray:
    x = x - np.mean(x)
    x = trim_silence(x, rel_db=60.0, pad_s=0.0)  # only digital silence
    if len(x) == 0 or np.max(np.abs(x)) < 1e-6:
        return x[:0]
    return x * (10 ** (peak_db / 20) / np.max(np.abs(x)))


def write_ogg(path: Path, x: np.ndarray, quality: float) -> None:
    """Write 16 kHz mono Ogg Vorbis in blocks (libsndfile can crash on
    very large single writes to Vorbis)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = x.astype(np.float32)
    with sf.SoundFile(str(path), "w", SR, 1, format="OGG", subtype="VORBIS",
                      compression_level=quality) as f:
        for i in range(0, len(data), 8192):
            f.write(data[i:i + 8192])


# --------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------
def assign_splits(n: int, fractions: tuple, rng: random.Random) -> list:
    """Seeded split of n items; val/test get at least one item when n >= 10."""
    order = list(range(n))
    rng.shuffle(order)
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 10:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    labels = [None] * n
    for rank, idx in enumerate(order):
        if rank < n_val:
            labels[idx] = "val"
        elif rank < n_val + n_test:
            labels[idx] = "test"
        else:
            labels[idx] = "train"
    return labels


def safe_stem(root: Path, path: Path, strip: str) -> str:
    """Readable unique stem from the path inside the package."""
    rel = str(path.relative_to(root).with_suffix(""))
    rel = re.sub(strip, "", rel) if strip else rel
    return re.sub(r"[^A-Za-z0-9._-]+", "-", rel.replace("/", "_")).strip("-_")


STEM_STRIP = {
    "fillets-cs": r"^usr/share/games/fillets-ng/sound/",
    "fillets": r"^usr/share/games/fillets-ng/sound/",
    "fillets-nl": r"^usr/share/games/fillets-ng/sound/",
    "hedgewars": r"^usr/share/games/hedgewars/Data/Sounds/voices/",
    "megaglest": r"^usr/share/games/megaglest/tilesets/",
    "stk": r"^usr/share/games/supertuxkart/data/",
    "widelands": r"^usr/share/games/widelands/data/sound/",
    "ktuberling": r"^usr/share/ktuberling/sounds/",
    "lincity": r"^usr/share/games/lincity-ng/sounds/",
    "wesnoth": r"^usr/share/games/wesnoth/[^/]+/data/core/sounds/ambient/",
}


# --------------------------------------------------------------------------
# Per-source processing
# --------------------------------------------------------------------------
def process_source(src: Source, root: Path, args, seen: set, rng: random.Random):
    """Convert one source; return (manifest entries, skip counts)."""
    skipped: dict = {}
    files = select_files(src, root, seen, skipped)
    if src.domain == "in":
        fractions = SPEECH_FRACTIONS if src.kind == "speech" else NOISE_FRACTIONS
        splits = assign_splits(len(files), fractions, rng)
    else:
        splits = ["ood"] * len(files)
        order = list(range(len(files)))
        rng.shuffle(order)  # seeded subsample order for capped OOD sources
        files = [files[i] for i in order]
    min_s = args.min_speech_s if src.kind == "speech" else args.min_noise_s
    entries = []
    for path, split in zip(files, splits):
        if src.max_files and len(entries) >= src.max_files:
            skipped["over_cap"] = skipped.get("over_cap", 0) + 1
            continue
        try:
            x = load_mono_16k(path)
        except Exception as exc:  # unreadable file
            skipped["unreadable"] = skipped.get("unreadable", 0) + 1
            print(f"  [skip] {path}: {exc}", flush=True)
            continue
        if len(x) < min_s * SR:  # too short even before trimming (or empty)
            skipped["too_short"] = skipped.get("too_short", 0) + 1
            continue
        if src.kind == "speech":
            y = process_speech(x, args.speech_level_db)
        else:
            y = process_noise(x, args.noise_peak_db)
        if len(y) < min_s * SR:
            skipped["too_short"] = skipped.get("too_short", 0) + 1
            continue
        name = f"{src.prefix}__{safe_stem(root, path, STEM_STRIP.get(src.prefix, ''))}.ogg"
        out = args.out / split / src.kind / name
        write_ogg(out, y, args.vorbis_level)
        entries.append({
            "file": str(out.relative_to(args.out)), "split": split,
            "kind": src.kind, "source": src.prefix, "package": src.package,
            "orig_path": "/" + str(path.relative_to(root)),
            "duration_s": round(len(y) / SR, 3),
        })
    return entries, skipped


# --------------------------------------------------------------------------
# Paired evaluation sets
# --------------------------------------------------------------------------
def build_clean(speech: list, dur: int, rng: np.random.Generator) -> np.ndarray:
    """Concatenate random speech clips (short gaps) and crop to `dur` samples."""
    parts, total = [], 0
    while total < dur:
        clip = speech[rng.integers(len(speech))]
        gap = np.zeros(int(rng.uniform(0.05, 0.3) * SR))
        parts += [clip, gap]
        total += len(clip) + len(gap)
    return np.concatenate(parts)[:dur]


def noise_segment(noise: list, dur: int, rng: np.random.Generator) -> np.ndarray:
    clip = noise[rng.integers(len(noise))]
    if len(clip) < dur:
        clip = np.tile(clip, int(np.ceil(dur / len(clip))) + 1)
    start = rng.integers(0, len(clip) - dur + 1)
    return clip[start:start + dur]


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float):
    s = active_rms(clean)
    n = np.sqrt(np.mean(noise ** 2) + 1e-12)
    noisy = clean + noise * (s / n) / 10 ** (snr_db / 20)
    peak = np.max(np.abs(noisy))
    scale = 0.95 / peak if peak > 0.95 else 1.0
    return clean * scale, noisy * scale


def build_testset(out_dir: Path, speech_files: list, noise_files: list,
                  n_pairs: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    speech = [sf.read(str(f))[0] for f in sorted(speech_files)]
    noise = [sf.read(str(f))[0] for f in sorted(noise_files)]
    for sub in ("clean", "noisy"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_pairs):
        dur = int(rng.uniform(3.0, 6.0) * SR)
        snr = int(rng.choice(TESTSET_SNRS))
        clean = build_clean(speech, dur, rng)
        clean = clean * 10 ** (rng.uniform(-8.0, 4.0) / 20)  # level variety
        clean, noisy = mix_at_snr(clean, noise_segment(noise, dur, rng), snr)
        name = f"{i:04d}_snr{snr}.wav"
        sf.write(str(out_dir / "clean" / name), clean, SR, subtype="PCM_16")
        sf.write(str(out_dir / "noisy" / name), noisy, SR, subtype="PCM_16")
        rows.append((name, snr))
    with open(out_dir / "snr.csv", "w") as f:
        f.write("file,snr\n" + "".join(f"{n},{s}\n" for n, s in rows))
    return rows


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------
def dir_size_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                 / 1e6, 2)


def totals(entries: list, out: Path) -> dict:
    result = {}
    for split in SPLITS + ("ood",):
        for kind in ("speech", "noise"):
            sel = [e for e in entries if e["split"] == split and e["kind"] == kind]
            result[f"{split}/{kind}"] = {
                "files": len(sel),
                "minutes": round(sum(e["duration_s"] for e in sel) / 60, 2),
                "size_mb": dir_size_mb(out / split / kind)
                if (out / split / kind).exists() else 0.0,
            }
    return result


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--debs", type=Path, default=Path("data/debs"),
                   help="directory of .deb files (missing ones are downloaded)")
    p.add_argument("--raw", type=Path, default=Path("data/raw"),
                   help="where packages are unpacked")
    p.add_argument("--out", type=Path, default=Path("data/prepared"))
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--speech-level-db", type=float, default=-25.0,
                   help="speech RMS over active frames, dBFS")
    p.add_argument("--noise-peak-db", type=float, default=-3.0)
    p.add_argument("--min-speech-s", type=float, default=1.0)
    p.add_argument("--min-noise-s", type=float, default=2.0)
    p.add_argument("--vorbis-level", type=float, default=0.8,
                   help="libsndfile compression level 0 (best) .. 1 (smallest)")
    p.add_argument("--testset-pairs", type=int, default=60)
    p.add_argument("--only", nargs="*", default=None,
                   help="process only these source prefixes (debugging)")
    p.add_argument("--keep", action="store_true",
                   help="do not wipe --out before writing")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)

    entries, skipped, licenses, unavailable = [], {}, {}, []
    seen: set = set()  # content hashes across all sources
    for i, src in enumerate(SOURCES):
        if args.only and src.prefix not in args.only:
            continue
        root = package_root(src.package, args.debs, args.raw)
        if root is None:
            if not src.optional:
                print(f"[error] required package {src.package} unavailable")
                return 1
            unavailable.append(src.package)
            print(f"[skip] optional package {src.package} unavailable")
            continue
        licenses[src.package] = summarise_license(root, src.package)
        print(f"[source] {src.prefix} ({src.package}, {src.kind}, {src.domain})",
              flush=True)
        rng = random.Random(f"{args.seed}-{src.prefix}")
        got, skip = process_source(src, root, args, seen, rng)
        entries += got
        skipped[src.prefix] = skip
        print(f"  kept {len(got)} files, "
              f"{sum(e['duration_s'] for e in got) / 60:.1f} min; skipped {skip}",
              flush=True)

    testsets = {}
    for name, split in (("testset_indomain", "test"), ("testset_ood", "ood")):
        sp = sorted((args.out / split / "speech").glob("*.ogg"))
        no = sorted((args.out / split / "noise").glob("*.ogg"))
        if sp and no:
            rows = build_testset(args.out / name, sp, no, args.testset_pairs,
                                 seed=args.seed + len(name))
            testsets[name] = {"pairs": len(rows), "snrs_db": list(TESTSET_SNRS),
                              "size_mb": dir_size_mb(args.out / name),
                              "from": f"{split}/speech + {split}/noise"}

    manifest = {
        "sample_rate": SR,
        "format": "Ogg Vorbis, mono",
        "seed": args.seed,
        "parameters": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in vars(args).items()},
        "sources": [{"prefix": s.prefix, "package": s.package, "kind": s.kind,
                     "domain": s.domain, "notes": s.notes} for s in SOURCES],
        "unavailable_packages": unavailable,
        "skipped": skipped,
        "totals": totals(entries, args.out),
        "testsets": testsets,
        "licenses": licenses,
        "files": entries,
    }
    manifest["total_size_mb"] = dir_size_mb(args.out)
    with open(args.out / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
    print(json.dumps(manifest["totals"], indent=1))
    print(f"total size {manifest['total_size_mb']} MB -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
