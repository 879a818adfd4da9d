"""denoise.metrics on real speech (espeak-ng) and recorded noise: identical > noisy, failures as NaN."""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np
import pytest

from conftest import mix_at_snr
from denoise import metrics

needs_pesq = pytest.mark.skipif(importlib.util.find_spec("pesq") is None, reason="pip install pesq")
needs_pystoi = pytest.mark.skipif(importlib.util.find_spec("pystoi") is None, reason="pip install pystoi")


@pytest.fixture(scope="module")
def short_speech(speech):
    return speech[: 3 * metrics.SAMPLE_RATE]


@pytest.fixture(scope="module")
def short_noisy(short_speech, noise):
    return mix_at_snr(short_speech, noise, 0.0)


def test_si_sdr_identical_is_very_high_and_noise_lowers_it(short_speech, short_noisy):
    assert metrics.si_sdr(short_speech, short_speech) > 60
    assert metrics.si_sdr(short_speech, 0.3 * short_speech) > 60  # scale-invariant
    assert metrics.si_sdr(short_speech, short_noisy) == pytest.approx(0.0, abs=1.0)  # mixed at 0 dB


@needs_pesq
def test_pesq_identical_is_the_maximum_and_noisy_is_lower(short_speech, short_noisy):
    clean = metrics.score(short_speech, short_speech, ["pesq_wb", "pesq_nb"])
    noisy = metrics.score(short_speech, short_noisy, ["pesq_wb", "pesq_nb"])
    assert clean["pesq_wb"] == pytest.approx(4.64, abs=0.01)
    assert clean["pesq_nb"] > 4.4
    assert noisy["pesq_wb"] < 2.0 and noisy["pesq_nb"] < clean["pesq_nb"] - 1


@needs_pystoi
def test_stoi_identical_is_one_and_noisy_is_lower(short_speech, short_noisy):
    clean = metrics.score(short_speech, short_speech, ["stoi", "estoi"])
    noisy = metrics.score(short_speech, short_noisy, ["stoi", "estoi"])
    assert clean["stoi"] == pytest.approx(1.0, abs=1e-3) and clean["estoi"] == pytest.approx(1.0, abs=1e-3)
    assert noisy["stoi"] < 0.95 and noisy["estoi"] < noisy["stoi"]


@needs_pesq
def test_pesq_on_silence_is_nan_with_a_warning_not_an_exception():
    silence = np.zeros(2 * metrics.SAMPLE_RATE, dtype=np.float32)
    with pytest.warns(metrics.MetricWarning, match="PESQ-WB"):
        values = metrics.score(silence, silence, ["pesq_wb", "si_sdr"])
    assert math.isnan(values["pesq_wb"]) and math.isfinite(values["si_sdr"])


def test_missing_package_is_reported_with_an_install_hint(monkeypatch, short_speech):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pystoi" else real_find_spec(name, *a))
    hints = metrics.unavailable_metrics(["stoi", "si_sdr"])
    assert list(hints) == ["stoi"] and "pip install pystoi" in hints["stoi"]
    with pytest.raises(metrics.MetricUnavailable, match="pystoi"):
        metrics.score(short_speech, short_speech, ["stoi"])


def test_metric_names_parse_with_aliases_and_reject_unknown_ones():
    assert metrics.parse_metric_names(None) == list(metrics.METRICS)
    assert metrics.parse_metric_names("pesq, stoi,dnsmos_bak") == ["pesq_wb", "stoi", "dnsmos"]
    assert metrics.columns(["dnsmos", "si_sdr"]) == ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "si_sdr"]
    with pytest.raises(ValueError, match="'mos'"):
        metrics.parse_metric_names("pesq,mos")


@pytest.mark.skipif(bool(metrics.unavailable_metrics(["dnsmos"])), reason="pip install speechmos librosa requests")
def test_dnsmos_runs_offline_and_rates_noise_lower(short_speech, short_noisy):
    clean = metrics.score(None, short_speech, ["dnsmos"])
    noisy = metrics.score(None, short_noisy, ["dnsmos"])
    assert set(clean) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    assert all(1.0 <= v <= 5.0 for v in (*clean.values(), *noisy.values()))
    assert noisy["dnsmos_bak"] < clean["dnsmos_bak"] - 0.5 and noisy["dnsmos_ovrl"] < clean["dnsmos_ovrl"]
