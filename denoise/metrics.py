"""Speech-quality metrics through well-kept libraries (no torch).

=========  ===========================================  ===========  =====================
name       what                                         reference?   package
=========  ===========================================  ===========  =====================
pesq_wb    PESQ wide-band (ITU-T P.862.2), 16 kHz       clean        ``pesq``
pesq_nb    PESQ narrow-band (P.862), at 8 kHz           clean        ``pesq``
stoi       short-time objective intelligibility         clean        ``pystoi``
estoi      extended STOI                                clean        ``pystoi``
si_sdr     scale-invariant SDR in dB (ours, numpy)      clean        —
dnsmos     DNSMOS P.835 SIG / BAK / OVRL (no reference)  none         ``speechmos librosa``
=========  ===========================================  ===========  =====================

Every metric is optional: one whose package is missing is reported by `unavailable_metrics`
with the ``pip install`` line that fixes it, never as a crash. Signals are float mono at
16 kHz (`SAMPLE_RATE`); `denoise.evaluate` resamples anything else before scoring.
A file on which a metric cannot be computed (PESQ finds no utterance in silence, say) gets
NaN for that metric and a `MetricWarning` naming the reason.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

SAMPLE_RATE = 16000


class MetricWarning(UserWarning):
    """A metric could not be computed on one signal; its value is NaN."""


class MetricUnavailable(RuntimeError):
    """The package a metric needs is not installed."""


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    columns: tuple[str, ...]  # the values it produces (DNSMOS gives three)
    needs_reference: bool
    modules: tuple[str, ...]  # importable modules it needs
    install: str  # the pip line that provides them
    compute: Callable[[np.ndarray | None, np.ndarray], dict[str, float]]

    def missing_modules(self) -> list[str]:
        return [module for module in self.modules if importlib.util.find_spec(module) is None]


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019), zero-mean signals."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    scale = np.dot(estimate, reference) / (np.dot(reference, reference) + eps)
    target = scale * reference
    residual = estimate - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(residual, residual) + eps)))


def _pesq(reference: np.ndarray, estimate: np.ndarray, mode: str) -> float:
    from pesq import pesq

    rate = SAMPLE_RATE
    if mode == "nb":
        import soxr

        rate = 8000
        reference = soxr.resample(reference, SAMPLE_RATE, rate)
        estimate = soxr.resample(estimate, SAMPLE_RATE, rate)
    try:
        return float(pesq(rate, reference.astype(np.float32), estimate.astype(np.float32), mode))
    except Exception as error:  # pesq raises NoUtterancesError / BufferTooShortError / PesqError
        warnings.warn(f"PESQ-{mode.upper()} not computable ({type(error).__name__}: {error}); reported as NaN", MetricWarning, stacklevel=3)
        return float("nan")


def _stoi(reference: np.ndarray, estimate: np.ndarray, extended: bool) -> float:
    from pystoi import stoi

    # pystoi warns and returns 1e-5 when too little remains after removing silent frames
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(reference, estimate, SAMPLE_RATE, extended=extended))
    if caught or not np.isfinite(value):
        name = "ESTOI" if extended else "STOI"
        warnings.warn(f"{name} not computable (too few speech frames); reported as NaN", MetricWarning, stacklevel=3)
        return float("nan")
    return value


_dnsmos_scorer = None


def _dnsmos(_reference: np.ndarray | None, estimate: np.ndarray) -> dict[str, float]:
    global _dnsmos_scorer
    if _dnsmos_scorer is None:
        _dnsmos_scorer = _make_dnsmos_scorer()
    # speechmos refuses samples outside [-1, 1]; clipping is what a WAV file would hold anyway
    scores = _dnsmos_scorer(np.clip(estimate, -1.0, 1.0).astype(np.float32), SAMPLE_RATE, False)
    return {"dnsmos_sig": float(scores["sig_mos"]), "dnsmos_bak": float(scores["bak_mos"]), "dnsmos_ovrl": float(scores["ovrl_mos"])}


def _make_dnsmos_scorer():
    """speechmos's DNSMOS P.835 with its bundled ONNX models (offline), on one onnxruntime thread.

    ``speechmos.dnsmos.run`` builds sessions that take every core; parallelism is ours (``--jobs``).
    """
    from pathlib import Path

    import onnxruntime
    from speechmos import dnsmos

    folder = Path(dnsmos.__file__).parent / "dnsmos_models"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    scorer = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
    scorer.primary_model_path = str(folder / "sig_bak_ovr.onnx")
    scorer.onnx_sess = onnxruntime.InferenceSession(scorer.primary_model_path, options, providers=["CPUExecutionProvider"])
    scorer.p808_onnx_sess = onnxruntime.InferenceSession(str(folder / "model_v8.onnx"), options, providers=["CPUExecutionProvider"])
    return scorer


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("pesq_wb", "PESQ wide-band (P.862.2)", ("pesq_wb",), True, ("pesq",), "pip install pesq",
               lambda ref, est: {"pesq_wb": _pesq(ref, est, "wb")}),
        Metric("pesq_nb", "PESQ narrow-band (P.862) at 8 kHz", ("pesq_nb",), True, ("pesq", "soxr"), "pip install pesq",
               lambda ref, est: {"pesq_nb": _pesq(ref, est, "nb")}),
        Metric("stoi", "STOI", ("stoi",), True, ("pystoi",), "pip install pystoi",
               lambda ref, est: {"stoi": _stoi(ref, est, extended=False)}),
        Metric("estoi", "extended STOI", ("estoi",), True, ("pystoi",), "pip install pystoi",
               lambda ref, est: {"estoi": _stoi(ref, est, extended=True)}),
        Metric("si_sdr", "scale-invariant SDR (dB)", ("si_sdr",), True, (), "",
               lambda ref, est: {"si_sdr": si_sdr(ref, est)}),
        Metric("dnsmos", "DNSMOS P.835 (non-intrusive)", ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"), False,
               ("speechmos", "librosa", "requests"), "pip install speechmos librosa requests", _dnsmos),
    )
}

# How each value column is read: higher is better for all of them.
COLUMN_LABELS = {
    "pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI", "estoi": "ESTOI", "si_sdr": "SI-SDR",
    "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK", "dnsmos_ovrl": "DNSMOS OVRL",
}


def parse_metric_names(text: str | None) -> list[str]:
    """``"pesq_wb,stoi"`` -> names; None or "all" -> every metric. Also accepts ``pesq`` for ``pesq_wb``
    and a DNSMOS column name for ``dnsmos``. Raises ValueError naming an unknown one."""
    if text is None or text.strip().lower() == "all":
        return list(METRICS)
    aliases = {"pesq": "pesq_wb", "sisdr": "si_sdr", "si-sdr": "si_sdr", "dnsmos_sig": "dnsmos", "dnsmos_bak": "dnsmos", "dnsmos_ovrl": "dnsmos"}
    names: list[str] = []
    for raw in text.split(","):
        name = aliases.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in METRICS:
            raise ValueError(f"unknown metric {raw.strip()!r}; choose from {', '.join(METRICS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("no metrics given")
    return names


def unavailable_metrics(names: list[str]) -> dict[str, str]:
    """Metric name -> one-line hint, for each of ``names`` whose package is not installed."""
    hints = {}
    for name in names:
        missing = METRICS[name].missing_modules()
        if missing:
            hints[name] = f"{name}: needs {', '.join(missing)} (`{METRICS[name].install}`)"
    return hints


def columns(names: list[str]) -> list[str]:
    return [column for name in names for column in METRICS[name].columns]


def score(reference: np.ndarray | None, estimate: np.ndarray, names: list[str]) -> dict[str, float]:
    """All value columns of the metrics ``names`` for one 16 kHz mono signal pair.

    ``reference`` may be None for non-intrusive metrics only. A metric whose package is missing
    raises `MetricUnavailable` (call `unavailable_metrics` first to drop those).
    """
    estimate = np.asarray(estimate, dtype=np.float32)
    values: dict[str, float] = {}
    for name in names:
        metric = METRICS[name]
        if metric.missing_modules():
            raise MetricUnavailable(unavailable_metrics([name])[name])
        if metric.needs_reference and reference is None:
            raise ValueError(f"{name} needs a clean reference")
        ref = None if reference is None else np.asarray(reference, dtype=np.float32)
        values.update(metric.compute(ref, estimate))
    return values
