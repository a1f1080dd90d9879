"""texport: neural texture synthesis that ships (Gatys fallback, texture networks, ProPO, ONNX/TensorRT)."""

__version__ = "0.1.0"
