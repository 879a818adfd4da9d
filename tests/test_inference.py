"""The torch-free inference API: `Model`, `enhance` and their agreement with the offline ONNX path."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import soxr

from denoise.checkpoint import CheckpointError
from denoise.inference import Model, Streamer, enhance, strength_from_atten_lim
from denoise.registry import resolve_model
from denoise.stft import istft, stft


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()


@pytest.fixture(scope="module")
def clip(noisy) -> np.ndarray:
    return noisy[:32000]


def whole_spectrogram_reference(audio: np.ndarray) -> np.ndarray:
    """stft -> ONE onnxruntime call on every frame -> istft: the plain offline definition."""
    session = ort.InferenceSession(str(resolve_model(None) / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"spec": stft(audio)[None]}
    for state in session.get_inputs()[1:]:
        feeds[state.name] = np.zeros([d if isinstance(d, int) else 1 for d in state.shape], np.float32)
    enhanced = session.run(["enhanced"], feeds)[0]
    return istft(enhanced[0], len(audio))


def test_enhance_at_16k_equals_the_whole_spectrogram_onnx_path(model, clip):
    expected = whole_spectrogram_reference(clip)
    for block_seconds in (10.0, 0.37):  # one block, and many blocks that split frames
        result = enhance(clip, 16000, model, block_seconds=block_seconds)
        assert result.shape == clip.shape and result.dtype == np.float32
        np.testing.assert_allclose(result, expected, atol=1e-5)
    assert np.abs(expected - clip).max() > 1e-3  # the model does change the signal


def test_enhance_at_48k_is_resample_enhance_resample_sample_aligned(model, clip):
    audio = soxr.resample(clip, 16000, 48000)
    result = enhance(audio, 48000, model)
    at_16k = soxr.resample(audio, 48000, 16000)
    expected = soxr.resample(whole_spectrogram_reference(at_16k), 16000, 48000)
    assert result.shape == audio.shape
    n = min(len(expected), len(result))
    np.testing.assert_allclose(result[:n], expected[:n], atol=1e-5)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_strength_zero_returns_the_original_exactly(model, clip, rate):
    audio = soxr.resample(clip, 16000, rate) if rate != 16000 else clip
    np.testing.assert_array_equal(enhance(audio, rate, model, strength=0.0), audio)


def test_strength_mixes_enhanced_with_aligned_original(model, clip):
    full = enhance(clip, 16000, model)
    half = enhance(clip, 16000, model, strength=0.25)
    np.testing.assert_allclose(half, 0.25 * full + 0.75 * clip, atol=1e-6)


def test_atten_lim_keeps_that_much_of_the_original(model, clip):
    assert strength_from_atten_lim(20) == pytest.approx(0.9)
    limited = enhance(clip, 16000, model, atten_lim_db=20)
    np.testing.assert_allclose(limited, enhance(clip, 16000, model, strength=0.9), atol=1e-6)
    # with both given, the gentler setting wins
    np.testing.assert_allclose(enhance(clip, 16000, model, strength=0.5, atten_lim_db=20),
                               enhance(clip, 16000, model, strength=0.5), atol=1e-6)


def test_channels_are_enhanced_independently_in_one_batch(model, clip, speech):
    other = speech[:len(clip)]
    stereo = np.stack([clip, other], axis=1)
    result = enhance(stereo, 16000, model)
    assert result.shape == stereo.shape
    np.testing.assert_allclose(result[:, 0], enhance(clip, 16000, model), atol=1e-5)
    np.testing.assert_allclose(result[:, 1], enhance(other, 16000, model), atol=1e-5)


@pytest.mark.parametrize("length", [0, 1, 159, 160, 161])
def test_short_inputs_keep_their_length(model, clip, length):
    assert enhance(clip[:length], 16000, model).shape == (length,)
    assert enhance(np.zeros((length, 2), np.float32), 8000, model).shape == (length, 2)


def test_bad_samples_and_shapes_are_rejected(model, clip):
    broken = clip.copy()
    broken[100] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        enhance(broken, 16000, model)
    with pytest.raises(ValueError, match="floating point"):
        enhance((clip * 32767).astype(np.int16), 16000, model)
    with pytest.raises(ValueError, match="shape"):
        enhance(np.zeros((2, 3, 4), np.float32), 16000, model)
    with pytest.raises(ValueError, match="strength"):
        Streamer(model, strength=1.5)
    with pytest.raises(ValueError, match="sample rate"):
        Streamer(model, sample_rate=0)


def test_model_reports_its_config(model):
    assert model.sample_rate == 16000
    assert model.latency_ms == 20.0
    assert model.name == "small"
    state = model.initial_state(3)
    assert all(s.shape[1] == 3 for s in state.values())


def test_corrupt_or_missing_model_gives_a_clear_error(tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(resolve_model(None), folder)
    with open(folder / "model.onnx", "r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(CheckpointError, match="sha256"):
        Model(folder)
    with pytest.raises(CheckpointError, match="no such model"):
        Model("no-such-model-name")


def test_inference_and_stream_command_never_import_torch(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails loudly
        "import numpy as np\n"
        "from denoise.inference import enhance\n"
        "import denoise.commands.stream\n"
        "out = enhance(np.zeros(4000, np.float32), 16000)\n"
        "assert out.shape == (4000,)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
