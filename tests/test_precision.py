"""bf16 descriptor passes (--precision): bf16 convolutions on channels-last activations, fp32 everywhere
else; `auto` resolves to bf16 only where the hardware computes it natively, and fp32 stays the old path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import texport.devices as devices
from texport.errors import TexportError
from texport.models.checkpoints import read_manifest
from texport.objectives.descriptor import PADDINGS, BorderPad, build_descriptor
from texport.objectives.losses import PO_LAYERS
from texport.objectives.objective import ObjectiveSpec, build_objective
from texport.optimization.gatys import synthesize
from texport.textures.images import load_image, resolve_texture
from texport.training.texnet import TexnetRun, train_texnet

from conftest import one_error_line


def test_auto_is_bf16_only_with_native_support(monkeypatch):
    assert devices.resolve_precision("fp32", "cpu") == "fp32" and devices.resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(TexportError, match="unknown precision 'fp64'"):
        devices.resolve_precision("fp64", "cpu")


def test_the_cpu_flags_are_read_from_proc_cpuinfo():
    flags = open("/proc/cpuinfo").read()
    assert devices.cpu_has_native_bf16() == any(f" {flag}" in flags for flag in devices.BF16_CPU_FLAGS)


def test_auto_resolved_to_fp32_is_the_fp32_path_bit_for_bit(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    x = torch.rand(2, 3, 48, 40)
    plain = build_descriptor("random", PO_LAYERS)
    auto = build_descriptor("random", PO_LAYERS, precision="auto")
    assert plain.precision == auto.precision == "fp32"
    for tap, features in plain(x).items():
        assert torch.equal(features, auto(x)[tap])


def test_bf16_taps_are_fp32_and_close_to_fp32_features_and_gradients(hed_path):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    results = {}
    for precision in ("fp32", "bf16"):
        desc = build_descriptor("vgg16-hed", PO_LAYERS, precision=precision)
        features = desc(x, padding="circular")
        loss = sum((f ** 2).mean() for f in features.values())
        results[precision] = features, torch.autograd.grad(loss, x)[0]
    (f32, g32), (f16, g16) = results["fp32"], results["bf16"]
    for tap in PO_LAYERS:
        assert f16[tap].dtype == torch.float32 and f16[tap].is_contiguous(memory_format=torch.channels_last)
        assert float((f16[tap] - f32[tap]).detach().norm() / f32[tap].detach().norm()) < 2e-2, tap
    assert g16.dtype == torch.float32
    assert float((g16 - g32).norm() / g32.norm()) < 2e-2


@pytest.mark.parametrize("mode", ["circular", "reflect"])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 3, 2, 3)])
def test_border_pad_is_f_pad_forward_and_backward(mode, shape):
    x = torch.randn(*shape, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    ours = BorderPad.apply(x, mode)
    theirs = F.pad(x, (1, 1, 1, 1), mode=mode)
    assert ours.is_contiguous(memory_format=torch.channels_last) and torch.equal(ours, theirs)
    upstream = torch.randn_like(theirs)
    (g_ours,) = torch.autograd.grad(ours, x, upstream)
    (g_theirs,) = torch.autograd.grad(theirs, x, upstream)
    assert torch.allclose(g_ours, g_theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("padding", sorted(PADDINGS))
def test_the_bf16_paths_cheap_padding_computes_what_f_pad_does(padding):
    """The bf16 path pads channels-last activations by concatenation (or inside the convolution for
    zeros): the same features as padding with F.pad before each convolution."""
    desc = build_descriptor("random", PO_LAYERS, precision="bf16")
    x = torch.rand(2, 3, 40, 24)
    mode = PADDINGS[padding]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        h = desc.preprocess(x).contiguous(memory_format=torch.channels_last)
        reference = desc._taps(h, desc.taps, lambda tap, h: desc.convs[tap](F.pad(h, (1, 1, 1, 1), mode=mode)))
        cheap = desc(x, padding=padding)
    for tap in PO_LAYERS:
        expected = reference[tap].float()
        assert float((cheap[tap] - expected).abs().max()) <= 1e-2 * float(expected.abs().max()), tap


@pytest.mark.slow
def test_gatys_in_bf16_optimizes_an_fp32_image_to_about_the_fp32_objective(hed_path):
    pebbles = load_image(resolve_texture("pebbles"))
    finals = {}
    for precision in ("fp32", "bf16"):
        spec = ObjectiveSpec(descriptor="vgg16-hed", precision=precision)
        objective = build_objective(pebbles, spec)
        assert objective.descriptor.precision == precision
        result = synthesize(pebbles, 64, iters=40, objective=objective, seed=0)
        assert result.image.dtype == torch.float32
        # measured in fp32 whatever it was optimized in
        finals[precision] = float(build_objective(pebbles, descriptor="vgg16-hed")(result.image)["total"][0])
        assert finals[precision] < 0.5 * result.history[0]
    assert finals["bf16"] < 1.5 * finals["fp32"]


def test_training_records_its_precision(tmp_path):
    out = tmp_path / "m.safetensors"
    kw = dict(iters=2, batch=1, size=32, descriptor="random", device="cpu", checkpoint_every=0)
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), out, precision="bf16", **kw))
    training = read_manifest(out)["training"]
    assert training["precision"] == "bf16"
    assert "precision" not in read_manifest(out)["objective"]  # the objective is the same in either precision


def test_cli_precision_option(cli_main, tmp_path):
    out = tmp_path / "g.png"
    result = cli_main("gatys", "pebbles", "-o", out, "--size", "32", "--iters", "3", "--descriptor", "random",
                      "--precision", "bf16")
    assert result.returncode == 0, result.stderr
    line = one_error_line(cli_main("gatys", "pebbles", "-o", out, "--size", "32", "--iters", "3",
                                   "--descriptor", "random", "--precision", "fp64"))
    assert "unknown precision 'fp64'" in line


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_gradient_is_autograds_in_either_layout(layout):
    """losses.gram's own backward (one product, in the features' layout) against autograd's through bmm."""
    from texport.objectives.losses import _Gram, flat_samples, gram

    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=layout).requires_grad_()
    upstream = torch.randn(2, 6, 6)
    (ours,) = torch.autograd.grad(gram(x), x, upstream)
    flat = x.reshape(2, 6, 35)
    (theirs,) = torch.autograd.grad(torch.bmm(flat, flat.transpose(1, 2)) / 35, x, upstream)
    assert ours.is_contiguous(memory_format=layout)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    exact = x.detach().double().contiguous(memory_format=layout).requires_grad_()
    assert torch.autograd.gradcheck(lambda f: _Gram.apply(flat_samples(f)), (exact,))
