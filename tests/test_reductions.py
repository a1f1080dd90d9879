"""mean_nested stays accurate after export, in onnxruntime and OpenVINO (which merges same-kind reductions)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from texport.objectives.reductions import mean_nested


class ColourMean(torch.nn.Module):
    def forward(self, x):
        return mean_nested(x, (3, 2))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("reductions") / "mean.onnx"
    torch.onnx.export(ColourMean(), (torch.rand(1, 3, 32, 48),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}})
    return path


def runtimes(path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    yield "onnxruntime", lambda x: session.run(None, {"x": x})[0]
    if importlib.util.find_spec("openvino"):
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        yield "openvino", lambda x: compiled({"x": x})[compiled.output(0)]


def test_mean_nested_is_a_mean_over_the_dims():
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(mean_nested(x, (3, 2, 1)), x.mean(dim=(1, 2, 3), keepdim=True))
    assert mean_nested(x, (3,)).shape == (2, 3, 5, 1)


def test_exported_colour_mean_of_a_megapixel_is_exact_to_float_rounding(exported):
    # a single flat reduction: about 2e-6 relative in both runtimes at this size
    x = (torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.3).numpy()
    want = x.astype(np.float64).mean(axis=(2, 3)).ravel()
    for name, run in runtimes(exported):
        got = run(x).ravel().astype(np.float64)
        assert got.shape == (3,) and np.abs(got / want - 1).max() < 6e-7, name


def test_instance_norm_is_torchs_with_the_same_weights():
    from texport.objectives.reductions import InstanceNorm2d

    ours, torchs = InstanceNorm2d(6, affine=True), torch.nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        torchs.weight.uniform_(0.5, 2)
        torchs.bias.uniform_(-1, 1)
    ours.load_state_dict(torchs.state_dict())
    x = torch.randn(2, 6, 40, 24) * 3 + 1
    assert torch.allclose(ours(x), torchs(x), atol=1e-5)
    assert ours.half()(x.half()).dtype == torch.float16
    with pytest.raises(ValueError, match="per-image statistics only"):
        InstanceNorm2d(6, track_running_stats=True)
