import numpy as np
import torch

from denoise.stft import istft, num_frames, stft, torch_istft, torch_stft


def test_perfect_reconstruction_numpy_and_torch(noisy):
    for length in (1, 159, 160, 161, len(noisy)):
        x = noisy[:length]
        spec = stft(x)
        assert spec.shape == (num_frames(length, 160), 161, 2)
        np.testing.assert_allclose(istft(spec, length), x, atol=1e-5)
        torch_spec = torch_stft(torch.from_numpy(x)[None])
        np.testing.assert_allclose(torch_spec[0].numpy(), spec, atol=1e-4)
        np.testing.assert_allclose(torch_istft(torch_spec, length)[0].numpy(), x, atol=1e-5)


def test_framing_is_causal(speech):
    """Frame t only sees samples before (t + 1) * hop."""
    x = speech[:3200].copy()
    later = x.copy()
    later[1600:] = 0.5
    a, b = stft(x), stft(later)
    np.testing.assert_array_equal(a[:10], b[:10])
    assert not np.allclose(a[10], b[10])
