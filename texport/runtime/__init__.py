"""Running models: one Backend interface over PyTorch, onnxruntime, OpenVINO and TensorRT, sampling
and stylization through any of them, and their benchmark (texport.runtime.bench)."""

from texport.runtime.backends import Backend, available, open_backend
from texport.runtime.sampling import sample_with, stylize, stylize_with
