"""Named texture objectives (descriptor + target statistics + losses), shared by Gatys, training and benchmarks.

`--loss` picks the terms: ``gram`` (Shi & Qiao 2020 eq. 2, optionally over a Gaussian pyramid, Snelgrove 2017),
``sw`` (sliced Wasserstein on features, Heitz et al. 2021), each optionally ``+color`` (sliced
Wasserstein on RGB pixels). The default, ``gram+color``, is what every shipped model is trained with:
the edge-trained vgg16-hed descriptor pins colours down only loosely, so every objective we ship
carries the colour term. Every objective also carries the spectrum constraint (Liu, Gousseau & Xia
2016, `texport.spectrum`) unless its weight is 0: the descriptor lets the optimizer put energy at
frequencies the exemplar lacks (pixel-scale hatching), which the Gram loss cannot see.

``sw`` projects each layer's feature vectors on a fixed, seeded set of unit directions (as many as
the layer has channels; `ObjectiveSpec.sw_seed`), drawn once when the objective is built, not fresh
per evaluation as Heitz et al. draw them. L-BFGS's line search and curvature pairs assume that
every evaluation sees the same function; with a fixed set, a resumed training run continues the
same objective, and a run is reproducible from its seed. The price: only the marginals along those
directions are matched, where fresh draws would match the whole distribution in expectation.

``color_octaves`` > 1 matches the colour distribution on a Gaussian pyramid of the RGB image, not on its
pixels alone (after Heeger & Bergen 1995, who match histograms at every pyramid level). Pixel colours
and second-moment features are both met by a field where every region has the same mean colour and the
right within-region variance: a palette collapsed to its mean (one grey-mauve for every pebble). A
blurred, subsampled level's colours are regional means, so matching their distribution too asks for
regions of different colours in the exemplar's proportions. Each level counts as much as the pixels.

Target statistics are computed once per exemplar, at its own size; the image being optimized can
have any size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

import texport.defaults as defaults
import texport.objectives.losses as losses
import texport.objectives.spectrum as spectrum
from texport.errors import TexportError
from texport.objectives.descriptor import Descriptor, build_descriptor

DEFAULT_ALPHA = defaults.STYLE_ALPHA
DEFAULT_CONTENT_LAYER = defaults.STYLE_CONTENT_LAYER
LOSSES = ("gram+color", "gram", "sw+color", "sw")
DEFAULT_LOSS = defaults.LOSS
# Layer weights: 'normalized' (default) sets w_l = 1 / ||G_l(target)||_F^2, so each layer counts as its
# relative Gram error. Raw Gram energies differ by ~1e6 between relu1_1 and pool4 on vgg16-hed, and
# with equal weights the optimizer ignores the deep layers that carry the large structures.
# 'uniform' (w_l = 1, eq. 2 as printed) and explicit {layer: weight} maps are also accepted.
LAYER_WEIGHTINGS = ("normalized", "uniform")
# The colour term is scaled by the target's weighted energy sum_l w_l ||G_l||^2 (= number of layers
# and octaves when normalized), so its weight means the same for any descriptor, layer set or scale.
DEFAULT_COLOR_WEIGHT = defaults.COLOR_WEIGHT
# The spectrum term mean((x - P(x))^2) is scaled the same way. Chosen by a sweep on Gatys
# (`benchmarks/gatys.py --section spectrum-sweep`, RESULTS.md "Spectrum weight sweep"): the smallest
# weight that met the spectral target on all four textures.
DEFAULT_SPECTRUM_WEIGHT = defaults.SPECTRUM_WEIGHT


def parse_loss(name: str) -> tuple[str, bool]:
    """'gram+color' -> ('gram', True); rejects unknown names with the list of choices."""
    key = name.strip().lower().replace("colour", "color")
    if key not in LOSSES:
        raise TexportError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    base, _, color = key.partition("+")
    return base, bool(color)


@dataclass
class ObjectiveSpec:
    """Everything that defines an objective except the exemplar (recorded by anything trained with it,
    as_dict), and the descriptor it is measured with (recorded by its identity). Training runs and
    refinement take one, so every trainer and the quality dial say which loss they optimize."""
    loss: str = DEFAULT_LOSS
    layers: Sequence[str] | None = None  # None: the PO layers, or Snelgrove's (pool1, conv3_2) when octaves > 1
    layer_weights: str | Mapping[str, float] = "normalized"
    octaves: int = 1
    color_weight: float = DEFAULT_COLOR_WEIGHT
    color_octaves: int = 1  # pyramid levels the colour term matches (1: the pixels only)
    spectrum_weight: float = DEFAULT_SPECTRUM_WEIGHT
    sw_seed: int = 0
    descriptor: str = "auto"  # auto, vgg19, vgg16-hed or random (tests)
    descriptor_weights: str | None = None  # an explicit weights file
    pooling: str = "avg"  # the descriptor's pooling: avg or max
    precision: str = "fp32"  # the descriptor's convolutions: fp32, bf16 or auto (texport.devices.resolve_precision)

    def __post_init__(self):
        if self.color_octaves < 1:  # checked where every caller passes: gatys, refinement and the trainers
            raise TexportError(f"colour octaves must be >= 1, got {self.color_octaves}")
        if self.layers is None:
            self.layers = losses.PYRAMID_LAYERS if self.octaves > 1 else losses.PO_LAYERS
        self.layers = tuple(self.layers)

    def as_dict(self) -> dict:
        """The manifest's record; color_octaves only where it is not 1, so the records of models trained
        before it existed still compare equal on --resume."""
        return {
            "loss": self.loss,
            "layers": list(self.layers),
            "layer_weights": self.layer_weights if isinstance(self.layer_weights, str) else dict(self.layer_weights),
            "octaves": self.octaves,
            "color_weight": self.color_weight,
            **({"color_octaves": self.color_octaves} if self.color_octaves != 1 else {}),
            "spectrum_weight": self.spectrum_weight,
        }


class TextureObjective:
    """Callable loss of images [B, 3, H, W] in [0, 1] against one exemplar: returns {term: [B]} with 'total'."""
    def __init__(self, descriptor: Descriptor, exemplar: torch.Tensor, spec: ObjectiveSpec | None = None,
                 tileable: bool = False):
        self.spec = spec = spec or ObjectiveSpec()
        self.base, self.with_color = parse_loss(spec.loss)
        missing = [layer for layer in spec.layers if layer not in descriptor.layers]
        if missing:
            raise TexportError(f"descriptor lacks layer(s) {', '.join(missing)} needed by the objective")
        if spec.spectrum_weight < 0:
            raise TexportError(f"spectrum weight must be >= 0, got {spec.spectrum_weight}")
        if spec.octaves < 1:
            raise TexportError(f"pyramid octaves must be >= 1, got {spec.octaves}")
        self.descriptor = descriptor
        self.layers = tuple(spec.layers)
        if isinstance(spec.layer_weights, str) and spec.layer_weights not in LAYER_WEIGHTINGS:
            raise TexportError(f"layer weights must be {' or '.join(LAYER_WEIGHTINGS)} or a mapping, got {spec.layer_weights!r}")
        # Zero padding puts an artificial edge around the exemplar, which the edge-trained descriptor
        # answers strongly: its statistics would then ask for edges a wrapping output cannot have
        # (tried here: 10x higher Gram loss on a tileable red-peppers run). So the exemplar is read
        # with reflect padding, a tileable output with circular padding, any other with reflect.
        self.padding = "circular" if tileable else "reflect"
        exemplar = exemplar.to(next(descriptor.buffers()).device).float()
        self.exemplar_size = tuple(exemplar.shape[-2:])
        self.check_octaves(self.exemplar_size, "exemplar")
        with torch.no_grad():
            pyramid = losses.gaussian_pyramid(exemplar, spec.octaves)
            feats = [descriptor(level, padding="reflect") for level in pyramid]  # the exemplar never wraps
            if self.base == "gram":
                self.target_grams = [losses.grams(f, self.layers) for f in feats]
                self.weights = self._layer_weights({n: self.target_grams[0][n].pow(2).sum() for n in self.layers})
                energy = sum(self.weights[n] * g[n].pow(2).sum() for g in self.target_grams for n in self.layers)
            else:
                self.directions = {
                    n: losses.random_directions(feats[0][n].shape[1], feats[0][n].shape[1], spec.sw_seed + i, exemplar.device)
                    for i, n in enumerate(self.layers)
                }
                self.target_sorted = [
                    {n: losses.sorted_projections(f[n], self.directions[n]) for n in self.layers} for f in feats
                ]
                self.weights = self._layer_weights({n: self.target_sorted[0][n].pow(2).mean() for n in self.layers})
                energy = sum(
                    self.weights[n] * t[n].pow(2).mean() for t in self.target_sorted for n in self.layers
                )
            self.color_directions = losses.random_directions(losses.COLOR_DIRECTIONS, 3, losses.COLOR_SEED, exemplar.device)
            self.check_color_octaves(self.exemplar_size, "exemplar")
            self.target_colors = [losses.sorted_projections(level, self.color_directions)
                                  for level in losses.gaussian_pyramid(exemplar, spec.color_octaves)]
        self.energy = float(energy)  # sum_l w_l ||G_l(target)||^2: the scale every other term is measured in
        self.color_scale = float(spec.color_weight) * float(energy)
        self.spectrum_scale = float(spec.spectrum_weight) * float(energy)
        self.exemplar = exemplar
        self._spectra: dict[tuple[int, int], torch.Tensor] = {}
        self._quantiles: dict[tuple, torch.Tensor] = {}

    def downscaled(self, steps: int) -> "TextureObjective":
        """The same objective against the exemplar blurred and halved `steps` times (coarse-to-fine Gatys)."""
        exemplar = self.exemplar
        for _ in range(steps):
            exemplar = losses.blur_downsample(exemplar)
        return TextureObjective(self.descriptor, exemplar, self.spec, tileable=self.padding == "circular")

    def reference_spectrum(self, height: int, width: int) -> torch.Tensor:
        """The spectrum constraint's reference F(u) at an output size (computed once per size)."""
        key = (height, width)
        if key not in self._spectra:
            self._spectra[key] = spectrum.reference_spectrum(self.exemplar, height, width)
        return self._spectra[key]

    def target_quantiles(self, key: tuple, target_sorted: torch.Tensor, count: int) -> torch.Tensor:
        """A sliced Wasserstein target resampled to an image's number of samples, once per count: the
        exemplar and the image rarely have as many pixels, and resampling costs as much as the sort."""
        key = (*key, count)
        if key not in self._quantiles:
            self._quantiles[key] = losses.resample_quantiles(target_sorted.float(), count)
        return self._quantiles[key]

    def _layer_weights(self, energies: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """w_l: 1/energy of the exemplar's statistics (normalized), 1 (uniform) or the given map."""
        chosen = self.spec.layer_weights
        if chosen == "normalized":
            return {n: 1.0 / max(float(e), 1e-12) for n, e in energies.items()}
        if chosen == "uniform":
            return {n: 1.0 for n in energies}
        return {n: float(chosen.get(n, 1.0)) for n in energies}

    def check_octaves(self, size: tuple[int, int], what: str) -> None:
        coarsest = min(size) // 2 ** (self.spec.octaves - 1)
        if coarsest < 16:
            raise TexportError(
                f"a {self.spec.octaves}-octave pyramid needs the {what}'s sides to be at least "
                f"{16 * 2 ** (self.spec.octaves - 1)} px (got {size[1]}x{size[0]}); use fewer octaves"
            )

    def check_color_octaves(self, size: tuple[int, int], what: str) -> None:
        octaves = self.spec.color_octaves
        if min(size) // 2 ** (octaves - 1) < 4:
            raise TexportError(
                f"{octaves} colour octaves need the {what}'s sides to be at least {4 * 2 ** (octaves - 1)} px "
                f"(got {size[1]}x{size[0]}); use fewer colour octaves"
            )

    def features(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Descriptor features of every pyramid octave of x."""
        circular = self.padding == "circular"
        return [self.descriptor(level, padding=self.padding) for level in losses.gaussian_pyramid(x, self.spec.octaves, circular)]

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.spec.octaves > 1:
            self.check_octaves(tuple(x.shape[-2:]), "output")
        return self.evaluate(x, self.features(x))

    def evaluate(self, x: torch.Tensor, feats: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The terms of x from its features (`features(x)`, computed once by a caller that needs more of them)."""
        terms: dict[str, torch.Tensor] = {}
        if self.base == "gram":
            terms["gram"] = sum(losses.texture_loss(f, g, self.weights) for f, g in zip(feats, self.target_grams))
        else:
            terms["sw"] = sum(
                self.weights[n] * losses.sliced_wasserstein_loss(
                    f[n], self.target_quantiles((octave, n), t[n], f[n].shape[-2] * f[n].shape[-1]), self.directions[n])
                for octave, (f, t) in enumerate(zip(feats, self.target_sorted))
                for n in self.layers
            )
        total = terms[self.base]
        if self.with_color:
            self.check_color_octaves(tuple(x.shape[-2:]), "image")
            levels = losses.gaussian_pyramid(x, len(self.target_colors), self.padding == "circular")
            terms["color"] = sum(
                losses.color_loss(level, self.target_quantiles(("color", octave), target, level.shape[-2] * level.shape[-1]),
                                  self.color_directions)
                for octave, (level, target) in enumerate(zip(levels, self.target_colors)))
            total = total + self.color_scale * terms["color"]
        if self.spectrum_scale > 0:
            terms["spectrum"] = spectrum.spectrum_loss(x, self.reference_spectrum(*x.shape[-2:]))
            total = total + self.spectrum_scale * terms["spectrum"]
        terms["total"] = total
        return terms


def build_objective(
    exemplar: torch.Tensor,
    spec: ObjectiveSpec | str | None = None,
    *,
    descriptor: Descriptor | str | None = None,
    tileable: bool = False,
    device: torch.device | str = "cpu",
    **settings,
) -> TextureObjective:
    """Build the descriptor (trimmed to the layers used) and the objective in one call.

    spec: an ObjectiveSpec, or its loss (default gram+color) with its other fields as keyword settings
    (layers, layer_weights, octaves, color_weight, spectrum_weight, descriptor_weights, pooling, precision).
    descriptor: a built Descriptor to reuse, or a name (auto, vgg19, vgg16-hed, random).
    """
    if isinstance(descriptor, str):
        settings["descriptor"] = descriptor
        descriptor = None
    if not isinstance(spec, ObjectiveSpec):
        spec = ObjectiveSpec(loss=spec or DEFAULT_LOSS, **settings)
    elif settings:
        raise TypeError(f"give an ObjectiveSpec or settings, not both ({', '.join(settings)})")
    parse_loss(spec.loss)
    if descriptor is None:
        descriptor = build_descriptor(spec.descriptor, spec.layers, pooling=spec.pooling,
                                      weights_file=spec.descriptor_weights, device=device, precision=spec.precision)
    return TextureObjective(descriptor, exemplar, spec, tileable=tileable)


class StyleObjective:
    """Style transfer's objective (Ulyanov et al. 2016 eq. 6, after Gatys, Ecker & Bethge 2016): the texture
    objective against the style image + alpha x a content loss against a photograph, per batch item.

    The content term is the mean squared difference of the content layer's features relative to the
    photograph's own mean squared feature, times the texture objective's energy (as the colour term),
    so alpha means the same for any photograph, style or descriptor. A photograph does not wrap:
    images are read with reflect padding. `bind(content)` fixes the photograph (Gatys); training
    passes each batch's targets (`content_target`) to the call instead.
    """

    def __init__(self, texture: TextureObjective, alpha: float = DEFAULT_ALPHA, content_layer: str = DEFAULT_CONTENT_LAYER):
        if alpha < 0:
            raise TexportError(f"the content weight alpha must be >= 0, got {alpha}")
        if content_layer not in texture.descriptor.layers:
            raise TexportError(f"descriptor lacks the content layer {content_layer} (build it with build_style_objective)")
        if texture.spec.octaves != 1 or texture.padding != "reflect":
            raise TexportError("style transfer reads one octave of an image that does not wrap")
        self.texture, self.alpha, self.content_layer = texture, float(alpha), content_layer
        self.content_scale = self.alpha * texture.energy
        self.target: torch.Tensor | None = None

    # what Gatys and the manifests read of an objective
    @property
    def descriptor(self) -> Descriptor:
        return self.texture.descriptor

    @property
    def padding(self) -> str:
        return self.texture.padding

    @property
    def exemplar_size(self) -> tuple[int, int]:
        return self.texture.exemplar_size

    def as_dict(self) -> dict:
        return {**self.texture.spec.as_dict(), "alpha": self.alpha, "content_layer": self.content_layer}

    @torch.no_grad()
    def content_target(self, content: torch.Tensor) -> torch.Tensor:
        """The content layer's features of photographs [B, 3, H, W] in [0, 1]."""
        dev = next(self.descriptor.buffers()).device
        return self.descriptor(content.to(dev).float(), padding="reflect", until=self.content_layer)[self.content_layer]

    def bind(self, content: torch.Tensor) -> "StyleObjective":
        """This objective with `content` [1, 3, H, W] as its fixed photograph."""
        bound = StyleObjective(self.texture, self.alpha, self.content_layer)
        bound.target = self.content_target(content)
        return bound

    def downscaled(self, steps: int) -> "StyleObjective":
        raise TexportError("style transfer starts from the photograph at full size: coarse-to-fine does not apply")

    def __call__(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        target = self.target if target is None else target
        if target is None:
            raise TexportError("a style objective needs the content's features: bind(content) or pass them")
        feats = self.texture.features(x)
        terms = self.texture.evaluate(x, feats)
        if feats[0][self.content_layer].shape != target.shape:
            raise TexportError(f"the image ({x.shape[-1]}x{x.shape[-2]}) and its content photograph differ in size")
        diff = losses.content_loss(feats[0][self.content_layer], target)
        terms["content"] = diff / target.float().pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
        terms["total"] = terms["total"] + self.content_scale * terms["content"]
        return terms


def build_style_objective(
    style: torch.Tensor,
    alpha: float = DEFAULT_ALPHA,
    content_layer: str = DEFAULT_CONTENT_LAYER,
    spec: ObjectiveSpec | None = None,
    *,
    descriptor: Descriptor | str | None = None,
    device: torch.device | str = "cpu",
    **settings,
) -> StyleObjective:
    """The texture objective on the style image (PO layers, single scale) and the content term, on one
    descriptor. spec: the style term's ObjectiveSpec, or its fields as keyword settings (loss,
    color_weight, spectrum_weight (default the style networks'), descriptor_weights, pooling, precision);
    descriptor: a built Descriptor to reuse, or a name."""
    if isinstance(descriptor, str):
        settings["descriptor"] = descriptor
        descriptor = None
    if spec is None:
        spec = ObjectiveSpec(**{"spectrum_weight": defaults.STYLE_SPECTRUM_WEIGHT, **settings})
    elif settings:
        raise TypeError(f"give an ObjectiveSpec or settings, not both ({', '.join(settings)})")
    if spec.octaves != 1 or tuple(spec.layers) != tuple(losses.PO_LAYERS):
        raise TexportError(f"the style term is measured at the PO layers ({', '.join(losses.PO_LAYERS)}), single scale")
    if descriptor is None:
        descriptor = build_descriptor(spec.descriptor, (*spec.layers, content_layer), pooling=spec.pooling,
                                      weights_file=spec.descriptor_weights, device=device, precision=spec.precision)
    return StyleObjective(TextureObjective(descriptor, style, spec, tileable=False), alpha, content_layer)
