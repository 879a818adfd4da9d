"""denoise: speech enhancement trained with Model as Loss.

Inference needs only numpy, soundfile, soxr and onnxruntime; training needs torch (``pip install denoise[train]``).

    import denoise
    clean = denoise.enhance(audio, sample_rate)              # numpy in, numpy out
    denoise.enhance_file("talk.wav")                         # writes talk_enhanced.wav
    model = denoise.Denoiser("small")                        # load once, reuse for many files
    model.enhance_file("a.wav"); model.enhance_file("b.flac", "b_clean.flac")
    stream = denoise.Streamer(model, sample_rate=48000)      # live: stream.process(chunk), stream.flush()
"""

__version__ = "0.1.0"

# Public names -> the module that defines them, imported on first use so `import denoise` stays light.
_EXPORTS = {
    "enhance": "denoise.inference",
    "Streamer": "denoise.inference",
    "Model": "denoise.inference",
    "enhance_file": "denoise.files",
    "enhance_files": "denoise.files",
    "Denoiser": "denoise.files",
    "FileResult": "denoise.files",
    "AudioFileError": "denoise.files",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'denoise' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
