"""Export: a trained model as ONNX graphs (checked against PyTorch) and TensorRT engines, through one
`export` verb whose output suffix names the format."""

from texport.export.cache import cached_onnx
from texport.export.exporter import PARITY, Exported, export
from texport.export.graphs import GraphSpec
