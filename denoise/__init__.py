"""denoise: speech enhancement trained with Model as Loss.

Inference needs only numpy, soundfile, soxr and onnxruntime; training needs torch (``pip install denoise[train]``).
"""

__version__ = "0.1.0"
