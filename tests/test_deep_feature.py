"""Deep-feature loss (the baseline MAL is compared with): Resemblyzer's pretrained speaker encoder,
and a tiny randomly initialised wav2vec2 via transformers."""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest
import torch

from denoise.deep_feature import DeepFeatureLoss, SpeakerEncoder, load_speech_model, resemblyzer_available, tiny_config
from denoise.train import TrainConfig, train
from conftest import DATA

needs_resemblyzer = pytest.mark.skipif(not resemblyzer_available(), reason="Resemblyzer not installed")
SOURCES = [pytest.param("tiny-random", id="wav2vec2-tiny-random"),
           pytest.param("resemblyzer", id="resemblyzer", marks=needs_resemblyzer)]


@pytest.fixture(scope="module", params=SOURCES)
def loss(request):
    if request.param == "tiny-random":
        pytest.importorskip("transformers")
    return DeepFeatureLoss(request.param)


@pytest.fixture(scope="module")
def resemblyzer_reference():
    """Resemblyzer's own `VoiceEncoder` and mel function, the reference for our port."""
    with pytest.MonkeyPatch.context() as patch:
        try:
            import webrtcvad  # noqa: F401
        except ImportError:
            # webrtcvad 2.0.10 imports pkg_resources, gone from recent setuptools; only its voice
            # activity detection needs it, which the reference functions used here never call
            patch.setitem(sys.modules, "webrtcvad", types.ModuleType("webrtcvad"))
        import resemblyzer
        from resemblyzer.audio import wav_to_mel_spectrogram
    return resemblyzer.VoiceEncoder("cpu", verbose=False), wav_to_mel_spectrogram


def test_zero_for_identical_signals_and_grows_with_noise(loss, speech, noise):
    clean = torch.from_numpy(speech[:16000]).unsqueeze(0)
    slightly, very = (clean + level * torch.from_numpy(noise[:16000]) for level in (0.01, 0.3))
    assert float(loss(clean, clean)) == 0.0
    assert 0 < float(loss(slightly, clean)) < float(loss(very, clean))


def test_gradient_reaches_the_signal_but_not_the_frozen_speech_model(loss, speech, noise):
    clean = torch.from_numpy(speech[:16000]).unsqueeze(0)
    estimate = (clean + 0.1 * torch.from_numpy(noise[:16000])).requires_grad_()
    value = loss(estimate, clean)
    value.backward()
    assert float(value.detach()) > 0
    assert estimate.grad.abs().sum() > 0 and torch.isfinite(estimate.grad).all()
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


@needs_resemblyzer
def test_speaker_encoder_port_matches_resemblyzer(resemblyzer_reference, speech):
    reference_encoder, reference_mel = resemblyzer_reference
    ours = SpeakerEncoder.pretrained().eval()
    wave = speech * 10 ** (-30 / 20) / np.sqrt(np.mean(speech ** 2))  # Resemblyzer's -30 dBFS input level
    for start in (0, 16000):
        partial = wave[start:start + 25600]  # 1.6 s: one partial utterance of 160 frames, as in embed_utterance
        their_mel = reference_mel(partial)[:160]
        our_mel = ours.mel_spectrogram(torch.from_numpy(partial)[None])[0, :160]
        assert float((our_mel - torch.from_numpy(their_mel)).abs().max()) < 1e-5 * float(np.abs(their_mel).max())
        with torch.no_grad():
            theirs = reference_encoder(torch.from_numpy(their_mel)[None])
            same_mel = ours.embed(torch.from_numpy(their_mel)[None])
            own_mel = ours.embed(our_mel[None])
        assert float((theirs * same_mel).sum()) > 0.999
        assert float((theirs * own_mel).sum()) > 0.999


@needs_resemblyzer
def test_speaker_encoder_runs_long_input_as_independent_partials(speech):
    encoder = SpeakerEncoder.pretrained().eval()
    wave = torch.from_numpy(speech[:40000]).unsqueeze(0)  # 2.5 s: 251 frames, two partials
    with torch.no_grad():
        whole = encoder(wave)
        mels = encoder.mel_spectrogram(wave)
        first, second = encoder.hidden_states(mels[:, :160]), encoder.hidden_states(mels[:, 160:])
    for layer, a, b in zip(whole, first, second):
        assert layer.shape == (1, 251, 256)
        torch.testing.assert_close(layer, torch.cat([a, b], 1), rtol=1e-5, atol=1e-6)


def test_local_model_folder_and_config_sources(tmp_path):
    pytest.importorskip("transformers")
    model = load_speech_model(tiny_config())
    model.save_pretrained(tmp_path / "w2v")
    reloaded = load_speech_model(tmp_path / "w2v")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    with pytest.raises(ValueError, match="not a local transformers model folder"):
        load_speech_model(tmp_path / "nothing")


@pytest.mark.parametrize("source", SOURCES)
def test_stage_two_with_deep_feature_loss_instead_of_mal(tmp_path, source):
    if source == "tiny-random":
        pytest.importorskip("transformers")
    for kind in ("speech", "noise"):
        (tmp_path / kind).mkdir()
        for path in DATA.glob(f"{kind}_*.flac"):
            shutil.copy(path, tmp_path / kind)
    config = TrainConfig(clean=str(tmp_path / "speech"), noise=str(tmp_path / "noise"), out=str(tmp_path / "run"),
                         steps=2, batch_size=2, segment_seconds=0.5, val_items=1, val_seconds=1.0, val_every=2,
                         mal_weight=0.0, deep_feature_model=source, deep_feature_weight=1.0,
                         export_onnx=False, progress=False)
    out = train(config)
    stage2 = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stage2 = [r for r in stage2 if r.get("stage") == "2" and "loss" in r]
    assert stage2 and all("deep" in r and "mal" not in r and r["deep"] > 0 for r in stage2)
