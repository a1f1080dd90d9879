"""ProPO, the progressive pseudo optimizer (Shi & Qiao 2020, sec. 3.3-3.5, fig. 3-4, eq. 6-9).

Five stages refine a noise image: x^m = x^(m-1) + PO^[m](gradients of x^(m-1)), m = 1..5. Stage m
reads the descriptor levels 1..m of x^(m-1) (relu1_1, pool1, pool2, pool3, pool4) and their
texture-loss gradients g^l = (4/N_l)(G^l(x) - G^l_target) F^l (eq. 6), computed from the target's
Gram matrices with plain tensor ops (texport.objectives.losses.gram_gradient: no autograd, so the whole graph
exports). Its pseudo optimizer starts at level m (two convolutions, two residual blocks), then goes
up level by level (nearest x2 upsampling plus a convolution, joined with that level's processed
gradient) to level 1 at full resolution, and a 1x1 convolution gives the 3-channel step.

Gradient scale: g^l spans orders of magnitude across levels, images and stages (raw Gram energies
differ ~1e6 between relu1_1 and pool4 on vgg16-hed, and shrink as the stages converge). Each g^l is
divided by its own root mean square per image before entering the network, so every input has
unit scale; the network learns step sizes from directions, as the InstanceNorm after its first
convolution would impose anyway. The RMS is formed in fp32 with a floor, so an exact match (g = 0)
gives zeros, not NaNs.

Colour input (optional, on in shipped models): the Gram gradient of the pixels themselves,
[r, g, b, 1] (so the 4x4 Gram holds the colour mean and second moments; the target's is kept in
centred form, color_statistics), joins level 1. The
edge-trained vgg16-hed descriptor pins colours down loosely; this gives the stages a direct colour
signal, in the same exportable form as the feature gradients. Kept on the Quality v2 objective:
matched 400-step runs scored a held-out median objective of 0.75 with it and 1.07 without (judge
0.76 vs 0.89; RESULTS.md, `propo_ablation.py --section propo-ablation-color-input`), where on the
Gram + colour objective it had not helped.

Start image and colour moments (both measured in benchmarks/propo_ablation.py, RESULTS.md): x^0
is the uniform noise scaled to 0.5 +- 0.05 (stage 1 no longer has to cancel full-range noise
pixel by pixel), and each stage image's per-channel colour mean and standard deviation are set to
the target's (AdaIN, eq. 5, applied to RGB). Without the latter the stages learned to darken the
image, the cheapest way to cut the deep levels' relative Gram errors, and colours drifted far
from the target (colour distance 0.20 vs 0.019 after matched 400-step runs).

Final colour histogram (optional, on in the shipped model): the last stage image's colour
histogram along the target's principal colour axes is set to the target's (Heeger & Bergen 1995,
texport.color_transfer). The per-channel mean and standard deviation leave the distribution's
shape loose; matching it cut the held-out colour distance from 0.019 to 0.0028 (Gram loss 0.86 ->
0.79 there, 0.46 -> 0.50 on training textures; RESULTS.md).

Every convolution pads circularly and the descriptor reads the image circularly, so outputs wrap
around (tileable) when their sides are multiples of 16.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import texport.objectives.color_transfer as color_transfer
import texport.objectives.losses as losses
from texport.models.precision import OwnPrecision, run_in_own_precision
from texport.objectives.descriptor import Descriptor
from texport.objectives.reductions import InstanceNorm2d, mean_nested, standardize

LEVELS = losses.PO_LAYERS  # relu1_1, pool1, pool2, pool3, pool4: levels 1..5
LEVEL_CHANNELS = {"relu1_1": 64, "pool1": 64, "pool2": 128, "pool3": 256, "pool4": 512}
COLOR_KEY = "rgb"  # the pixels' colour covariance and mean, [[C, m], [m^T, 1]] (color_statistics)
MEAN_KEY, STD_KEY = "rgb_mean", "rgb_std"  # the target's per-channel colour moments [B, 3, 1, 1]
BASIS_KEY, QUANTILES_KEY = "rgb_basis", "rgb_quantiles"  # principal colour axes [B, 3, 3], quantiles along them
DEFAULT_WIDTHS = (16, 32, 64, 64, 64)  # PO channels at levels 1..5
SIZE_MULTIPLE = 16  # pool4 is 1/16 of the image
MIN_SIDE = 32  # pool4 at least 2x2: InstanceNorm needs more than one pixel
UPSAMPLE_MODES = ("nearest", "bilinear", "shuffle")
RMS_FLOOR = 1e-20


def normalize_gradient(g: torch.Tensor) -> torch.Tensor:
    """g / RMS(g) per image: every gradient enters the optimizer at unit scale."""
    rms = mean_nested(g.float().pow(2), (3, 2, 1)).clamp_min(RMS_FLOOR).sqrt()
    return g / rms


def with_ones(image: torch.Tensor) -> torch.Tensor:
    """[r, g, b] -> [r, g, b, 1]: its Gram matrix holds the colour mean as well as the second moments."""
    return torch.cat([image, torch.ones_like(image[:, :1])], dim=1)


def color_statistics(image: torch.Tensor) -> torch.Tensor:
    """The colour covariance C and mean m of image [B, 3, H, W] as one [B, 4, 4] matrix [[C, m], [m^T, 1]].

    It says what the [r, g, b, 1] Gram matrix [[C + m m^T, m], [m^T, 1]] says, in centred form:
    C from raw second moments (~0.3) minus m m^T loses a small variance to rounding that each
    runtime does differently (1e-5 to 4e-5 relative on a 64 px red-peppers crop), and ProPO, which
    sets every stage image's mean and variance to the target's and then reads the colour gradient
    whose mean and variance terms cancel, turned that into 6e-4 image differences.
    """
    cov, mean = color_transfer.covariance(image)
    top = torch.cat([cov, mean], dim=2)
    bottom = torch.cat([mean.transpose(1, 2), torch.ones_like(mean[:, :1])], dim=2)
    return torch.cat([top, bottom], dim=1)


def color_gradient(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 6 for the pixels: rows r, g, b of (4/N)(G([x; 1]) - G_target)[x; 1], [B, 3, H, W].

    `target` is color_statistics(texture). The same value as
    losses.gram_gradient(with_ones(image), losses.gram(with_ones(texture)))[:, :3] (tested). After
    the per-channel colour matching the Gram difference is tiny (off-diagonal ~5e-4 against
    covariances of ~0.04 at 1024 px), so it is summed directly rather than formed from two large
    sums: with d = x - mean_target, E[x x^T] - G_target = E[d d^T - C_target] + mean_target e^T
    + e mean_target^T, e = E[d], and the summands d d^T - C_target are near zero on average, so
    partial sums stay small and keep their bits (shifted-data variance). Taken as the image's
    covariance minus the target's, each runtime's rounding (~5e-8 at 1024 px) was 1e-4 of the
    difference, and the unit-RMS colour gradient passed that on to the image.
    """
    b, _, h, w = image.shape
    x = image.float()
    mean_t = target[:, :3, 3].float()[:, :, None, None]  # [B, 3, 1, 1]
    d = x - mean_t
    e = mean_nested(d, (3, 2)).reshape(b, 3, 1)
    summands = d[:, :, None] * d[:, None] - target[:, :3, :3].float()[:, :, :, None, None]  # [B, 3, 3, H, W]
    shifted = mean_nested(summands, (4, 3)).reshape(b, 3, 3)
    m = mean_t.reshape(b, 3, 1)
    diff = shifted + torch.bmm(m, e.transpose(1, 2)) + torch.bmm(e, m.transpose(1, 2))
    return ((torch.bmm(diff, x.reshape(b, 3, h * w)) + e) * (4.0 / (h * w))).reshape(b, 3, h, w)


def color_moments(statistics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour mean and standard deviation [B, 3, 1, 1] read from color_statistics' matrix.

    The same numbers color_gradient reads as the target's, so after match_moments the image's mean
    and variance cancel the target's there to the image's own rounding. Computed separately, they
    differed from those by ~1e-7, differently in each runtime, and the unit-RMS colour gradient
    turned that into 1e-4 image differences between onnxruntime and torch.
    """
    mean = statistics[:, :3, 3]
    var = torch.diagonal(statistics[:, :3, :3], dim1=1, dim2=2)
    return mean[:, :, None, None], var.clamp_min(0).sqrt()[:, :, None, None]


def match_moments(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give each colour channel of x the target's mean and standard deviation (AdaIN, Shi & Qiao 2020 eq. 5, on RGB)."""
    standard = standardize(x.float(), eps)  # moments in fp32 whatever the graph's precision
    return (standard * std.float() + mean.float()).to(x.dtype)


def conv(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """Convolution, InstanceNorm, LeakyReLU (Shi & Qiao 2020 sec. 4.1), circular padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, padding_mode="circular"),
        InstanceNorm2d(cout, affine=True),
        nn.LeakyReLU(0.2),
    )


class ResidualBlock(nn.Module):
    """He et al. 2016: x + IN(conv(LReLU(IN(conv(x)))))."""
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular"),
            InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GradientBranch(nn.Sequential):
    """One level's gradient: two convolutions and r = 2 residual blocks (Shi & Qiao 2020 sec. 4.1)."""
    def __init__(self, cin: int, width: int, residual_blocks: int = 2):
        super().__init__(conv(cin, width), conv(width, width), *[ResidualBlock(width) for _ in range(residual_blocks)])


def pseudo_optimizer_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The pseudo-optimizers' weights in a model file's state, keyed as in `ProPO.pseudo_optimizers`
    (files written before the attribute's rename call it "optimizers.")."""
    return {k.removeprefix("pseudo_optimizers.").removeprefix("optimizers."): v for k, v in state.items()}


def upsample_circular(h: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 of a wrapping feature map: padded by one cell circularly, resized, cropped."""
    big = F.interpolate(F.pad(h, (1, 1, 1, 1), mode="circular"), scale_factor=2.0, mode="bilinear", align_corners=False)
    return big[..., 2:-2, 2:-2]


class Upsample(nn.Sequential):
    """x2 from level i+1 to level i's width: 'nearest' + conv (Shi & Qiao 2020), 'bilinear' + conv, or
    'shuffle' (a conv to 4x the channels, then pixel shuffle; Shi et al. 2016). Nearest neighbour copies
    each coarse cell into a 2x2 block, which a following 3x3 conv smooths only in part: a candidate for
    the 2 px grid on ProPO's outputs (benchmarks/propo_ablation.py compares the three)."""
    def __init__(self, cin: int, cout: int, mode: str = "nearest"):
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsampling {mode!r}: choose {', '.join(UPSAMPLE_MODES)}")
        if mode == "shuffle":
            layers = [nn.Conv2d(cin, 4 * cout, 3, padding=1, padding_mode="circular"), nn.PixelShuffle(2),
                      InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2)]
        else:
            layers = list(conv(cin, cout))  # the layers themselves: a model file's keys stay ups.<i>.<layer>
        super().__init__(*layers)
        self.mode = mode

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        elif self.mode == "bilinear":
            h = upsample_circular(h)
        return super().forward(h)


class PseudoOptimizer(nn.Module):
    """PO^[m]: gradients of levels 1..m (finest first) -> the step Δx [B, 3, H, W] (Shi & Qiao 2020 fig. 3)."""
    def __init__(self, levels: int, widths: Sequence[int] = DEFAULT_WIDTHS, color_input: bool = True,
                 upsample: str = "nearest"):
        super().__init__()
        self.levels = levels
        self.branches = nn.ModuleList(
            GradientBranch(LEVEL_CHANNELS[LEVELS[i]] + (3 if i == 0 and color_input else 0), widths[i]) for i in range(levels)
        )
        # Going up from level i+1 to level i: upsample x2 to level i's width, join, convolve.
        self.ups = nn.ModuleList(Upsample(widths[i + 1], widths[i], upsample) for i in range(levels - 1))
        self.joins = nn.ModuleList(conv(2 * widths[i], widths[i]) for i in range(levels - 1))
        self.to_rgb = nn.Conv2d(widths[0], 3, 1)
        with torch.no_grad():  # start with small steps: the first stages then see near-noise statistics
            self.to_rgb.weight.mul_(0.1)
            self.to_rgb.bias.zero_()

    def forward(self, gradients: Sequence[torch.Tensor]) -> torch.Tensor:
        h = run_in_own_precision(self.branches[-1], gradients[-1])
        for i in range(self.levels - 2, -1, -1):
            up = self.ups[i](h)
            h = self.joins[i](torch.cat([up, run_in_own_precision(self.branches[i], gradients[i])], dim=1))
        return run_in_own_precision(self.to_rgb, h)  # ProPO.half_body keeps to_rgb fp32


class ProPO(nn.Module):
    """The progressive pseudo optimizer: noise + target Gram matrices -> texture, in one forward pass.

    The descriptor is a submodule (an exported graph carries it) but not part of a checkpoint:
    `trainable_state()` holds only the pseudo optimizers, and the manifest records the descriptor's
    identity.
    """

    def __init__(self, descriptor: Descriptor, stages: int = 5, widths: Sequence[int] = DEFAULT_WIDTHS,
                 color_input: bool = True, noise_amplitude: float = 0.1, color_match: bool = True,
                 histogram_match: bool = True, upsample: str = "nearest"):
        super().__init__()
        missing = [lv for lv in LEVELS[:stages] if lv not in descriptor.layers]
        if missing or not 1 <= stages <= len(LEVELS):
            raise ValueError(f"ProPO needs 1..5 stages and descriptor levels {LEVELS[:stages]} (missing {missing})")
        self.descriptor = descriptor
        self.levels = LEVELS[:stages]
        self.widths = tuple(int(w) for w in widths)
        self.color_input = color_input
        self.noise_amplitude = float(noise_amplitude)
        self.color_match = bool(color_match)
        self.histogram_match = bool(histogram_match)
        self.upsample = upsample
        self.pseudo_optimizers = nn.ModuleList(PseudoOptimizer(m, self.widths, color_input, upsample) for m in range(1, stages + 1))

    def config(self) -> dict:
        config = {"stages": len(self.pseudo_optimizers), "widths": list(self.widths), "color_input": self.color_input,
                  "noise_amplitude": self.noise_amplitude, "color_match": self.color_match,
                  "histogram_match": self.histogram_match}
        if self.upsample != "nearest":  # absent: as in every model made before the option (a resume compares this)
            config["upsample"] = self.upsample
        return config

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("descriptor.")}

    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, texture: torch.Tensor) -> dict[str, torch.Tensor]:
        """The target statistics of a texture [B, 3, H, W] in [0, 1] (any size): {level: [B, C, C]}.

        Read with reflect padding: an exemplar does not wrap, and a zero border would ask for edges.
        """
        return self.target_statistics(texture)

    def target_statistics(self, texture: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.descriptor(texture, padding="reflect", until=self.levels[-1])
        statistics = losses.grams(feats, self.levels)
        rgb = texture.float()  # colour statistics in fp32 whatever the graph's precision
        colors = color_statistics(rgb)
        if self.color_input:
            statistics[COLOR_KEY] = colors
        if self.color_match:
            statistics[MEAN_KEY], statistics[STD_KEY] = color_moments(colors)
        if self.histogram_match:
            statistics[BASIS_KEY], statistics[QUANTILES_KEY] = color_transfer.statistics(rgb)
        return statistics

    def features(self, image: torch.Tensor, deepest: str) -> dict[str, torch.Tensor]:
        """Descriptor levels of a generated image, read circularly (outputs wrap)."""
        return self.descriptor(image, padding="circular", until=deepest)

    def half_body(self, fp32_stages: int = 2) -> "ProPO":
        """fp16 where the work is, fp32 where the gain is (in place; returns self).

        The descriptor's convolutions after its first, and the pseudo optimizers of stages 3..L, go
        to fp16 (about 85% of the FLOPs at 256 px: descriptor passes 62%, stages 3-5 25%); stages
        1-2 (7%), every stage's 1x1 output convolution (the step added to the image), the image, the
        descriptor's input and first convolution (so relu1_1 too), the Gram matrices, the
        gradients' normalization and the colour steps stay fp32. Rounding one part at a time to
        fp16 (red-peppers, 256 px) moved the output by: stage 1 4.1e-3, stage 2 3.7e-3, stage 3
        2.1e-3, stage 4 7.9e-4, stage 5 5.1e-4, the steps 2.7e-3, descriptor convolution outputs
        2.8e-3, but the descriptor's input (the image, x 255 for caffe weights) 7.9e-2; the whole
        network in fp16: 1.2e-2 to 4.7e-2, beyond the 1e-2 budget.
        """
        first, *rest = self.descriptor.convs.keys()
        for name in rest:
            self.descriptor.convs[name] = OwnPrecision(self.descriptor.convs[name].half())
        for optimizer in self.pseudo_optimizers[fp32_stages:]:
            optimizer.half()
            optimizer.to_rgb.float()
        return self

    def stage_gradients(self, image: torch.Tensor, feats: Mapping[str, torch.Tensor],
                        statistics: Mapping[str, torch.Tensor], m: int) -> list[torch.Tensor]:
        """Normalized eq. 6 gradients of levels 1..m (plus the colour gradient joined at level 1).

        Training treats them as observations (detached, a no-op at inference): backpropagating
        through the cubic G(F)F terms made training diverge (stage losses rose 10x within 80 steps
        at lr 1e-3); learned optimizers drop these second-order paths likewise (Andrychowicz et al.
        2016, "Learning to learn by gradient descent by gradient descent", sec. 2.1). Each stage
        image still reaches the loss through x^m = x^(m-1) + Δx.
        """
        grads = [normalize_gradient(losses.gram_gradient(feats[lv].detach(), statistics[lv])) for lv in self.levels[:m]]
        if self.color_input:
            color = color_gradient(image.detach().float(), statistics[COLOR_KEY])
            grads[0] = torch.cat([grads[0], normalize_gradient(color)], dim=1)
        return grads  # fp32; each pseudo optimizer casts them to its own precision

    def run(self, noise: torch.Tensor, statistics: Mapping[str, torch.Tensor], final_features: bool = False
            ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor] | None]]:
        """All stage images x^1..x^L and the descriptor features computed on each.

        One descriptor pass per image: the pass over x^m goes to level m+1, serving both stage m's
        loss (levels 1..m) and stage m+1's input; x^L's pass (loss only) runs if final_features.
        """
        h, w = noise.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or min(h, w) < MIN_SIDE:
            raise ValueError(f"ProPO noise sides must be multiples of {SIZE_MULTIPLE} and at least {MIN_SIDE}, got {w}x{h}")
        stages = len(self.pseudo_optimizers)
        x = self.start_image(noise)
        feats = self.features(x, self.levels[0])
        images, features = [], []
        for m in range(1, stages + 1):
            x = x + self.pseudo_optimizers[m - 1](self.stage_gradients(x, feats, statistics, m))
            if self.color_match:
                x = match_moments(x, statistics[MEAN_KEY], statistics[STD_KEY])
            if self.histogram_match and m == stages:  # on the displayable range: outliers would stretch the CDF's bins
                x = color_transfer.match(x.clamp(0, 1), statistics[BASIS_KEY], statistics[QUANTILES_KEY])
            if m < stages:
                feats = self.features(x, self.levels[m])
            else:
                feats = self.features(x, self.levels[-1]) if final_features else None
            images.append(x)
            features.append(feats)
        return images, features

    def start_image(self, noise: torch.Tensor) -> torch.Tensor:
        """x^0 from uniform [0, 1) noise: 0.5 + amplitude (noise - 0.5) (amplitude 1: the noise itself)."""
        if self.noise_amplitude == 1.0:
            return noise
        return 0.5 + self.noise_amplitude * (noise - 0.5)

    def synthesize(self, noise: torch.Tensor, statistics: Mapping[str, torch.Tensor], stages: bool = False):
        """noise [B, 3, H, W] (sides multiples of 16, at least 32) -> x^L; with stages=True, the list x^1..x^L."""
        images, _ = self.run(noise, statistics)
        return images if stages else images[-1]

    def forward(self, noise: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        return self.synthesize(noise, self.target_statistics(texture))
