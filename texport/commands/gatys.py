"""`texport gatys`: synthesis by optimization (Gatys et al. 2015), the slow exact fallback, and with
--content style transfer (Gatys et al. 2016) on the style networks' objective."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import texport.defaults as D
from texport.commands.options import (
    Bits16,
    ColorOctaves,
    ColorWeight,
    DescriptorName,
    DescriptorWeights,
    Device,
    Loss,
    Precision,
    Seed,
    SizeLimit,
    check_output,
    parse_layers,
    progress_bar,
    weights_path,
)
from texport.devices import resolve_device
from texport.errors import TexportError
from texport.objectives.losses import color_distance
from texport.objectives.objective import ObjectiveSpec, build_objective, build_style_objective
from texport.optimization.gatys import check_request, level_budgets, synthesize, transfer_style
from texport.optimization.refinement import start_image
from texport.textures.images import load_image, resolve_texture, save_image, side_by_side


def gatys(
    texture: str = typer.Argument(..., help="Exemplar image (PNG, JPEG, TGA, WebP, BMP) or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG (written atomically)."),
    size: Optional[str] = typer.Option(None, "--size", help="Output size: N or WxH, independent of the exemplar's "
                                                           "(default 256; with --content, the photograph's)."),
    iters: int = typer.Option(D.GATYS_ITERS, "--iters", help="Loss/gradient evaluations (the optimization budget)."),
    content: Optional[Path] = typer.Option(None, "--content", help="Style transfer: render this photograph in the style "
                                                                  "of TEXTURE (Gatys et al. 2016), starting from it."),
    alpha: float = typer.Option(D.STYLE_ALPHA, "--alpha", help="With --content: the content term's weight (eq. 6 of "
                                                               "Ulyanov et al. 2016, relative to the style term)."),
    optimizer: str = typer.Option(D.GATYS_OPTIMIZER, "--optimizer", help="lbfgs (L-BFGS-B, bounded) or adam (projected)."),
    loss: Loss = D.LOSS,
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated taps, or po / texnet / pyramid."),
    layer_weights: str = typer.Option("normalized", "--layer-weights", help="normalized (1/||G_target||^2) or uniform."),
    color_weight: ColorWeight = D.COLOR_WEIGHT,
    color_octaves: ColorOctaves = 1,
    spectrum_weight: float = typer.Option(D.SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (Liu et al. 2016; 0 = off)."),
    pyramid: int = typer.Option(1, "--pyramid", help="Gaussian-pyramid octaves (Snelgrove 2017); 1 = single scale."),
    tileable: bool = typer.Option(False, "--tileable", help="Circular padding: the output wraps around seamlessly."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    pooling: str = typer.Option("avg", "--pooling", help="Descriptor pooling: avg (default) or max."),
    precision: Precision = D.GATYS_PRECISION,
    lr: float = typer.Option(D.GATYS_LR, "--lr", help="Adam learning rate (pixels in [0, 1])."),
    size_limit: SizeLimit = None,
    bits16: Bits16 = False,
    compare: Optional[Path] = typer.Option(None, "--compare", help="Also write exemplar | result side by side."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this image file, or a sample (--seed) of this model, instead of noise."),
    coarse_to_fine: int = typer.Option(1, "--coarse-to-fine", help="Solve at 1/2^(K-1) of the size first, then each finer scale (same total cost)."),
) -> None:
    """Synthesize a texture by optimization (Gatys et al. 2015), the slow exact fallback; with --content, style transfer."""
    check_output(output)
    if compare is not None:
        check_output(compare)
    dev = resolve_device(device)
    if content is not None:
        clashes = [name for name, given in (("--tileable", tileable), ("--pyramid", pyramid > 1), ("--init", init),
                                            ("--coarse-to-fine", coarse_to_fine > 1), ("--layers", layers),
                                            ("--loss", loss != D.LOSS), ("--optimizer", optimizer != D.GATYS_OPTIMIZER))
                   if given]
        if clashes:
            raise TexportError(f"style transfer (--content) starts from the photograph with the style networks' objective: "
                               f"drop {', '.join(clashes)}")
        photo = load_image(content)
        width, height = check_request(size or (photo.shape[-1], photo.shape[-2]), iters, size_limit=size_limit)
        style_image = load_image(resolve_texture(texture))
        style_objective = build_style_objective(style_image.to(dev), alpha, color_weight=color_weight, color_octaves=color_octaves,
                                                spectrum_weight=spectrum_weight, descriptor=descriptor,
                                                descriptor_weights=weights_path(descriptor_weights), device=dev,
                                                precision=precision)
        bar, update = progress_bar(iters, f"gatys style {width}x{height}")
        with bar:
            result = transfer_style(style_image, photo, (width, height), iters, style_objective, update, device=dev,
                                    size_limit=size_limit)
        return report(result, output, bits16, compare, [photo, style_image])
    width, height = check_request(size or "256", iters, optimizer, coarse_to_fine, size_limit)
    exemplar = load_image(resolve_texture(texture))
    spec = ObjectiveSpec(loss=loss, layers=parse_layers(layers), layer_weights=layer_weights, octaves=pyramid,
                         color_weight=color_weight, color_octaves=color_octaves, spectrum_weight=spectrum_weight,
                         descriptor=descriptor, descriptor_weights=weights_path(descriptor_weights), pooling=pooling,
                         precision=precision)
    # built here: it validates loss, layers and descriptor before the progress bar starts
    objective = build_objective(exemplar.to(dev), spec, tileable=tileable, device=dev)
    if pyramid > 1:
        objective.check_octaves((height, width), "output")
    start = None
    if init is not None:
        start = start_image(init, exemplar, width, height, seed=seed, device=dev)
    bar, update = progress_bar(sum(level_budgets(iters, coarse_to_fine)), f"gatys {width}x{height}")
    with bar:
        result = synthesize(exemplar, (width, height), iters, objective, update, optimizer=optimizer, seed=seed,
                            device=dev, lr=lr, size_limit=size_limit, init=start, coarse_to_fine=coarse_to_fine)
    dist = float(color_distance(result.image, exemplar))
    report(result, output, bits16, compare, [exemplar],
           f", colour distance {dist:.4f}, descriptor {result.descriptor[:28]}")


def report(result, output: Path, bits16: bool, compare: Optional[Path], inputs: list, extra: str = "") -> None:
    """Write the result (and, with --compare, the inputs | result) and say what was written."""
    save_image(result.image, output, bits=16 if bits16 else 8)
    if compare is not None:
        save_image(side_by_side([*inputs, result.image]), compare)
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items() if k != "total")
    height, width = result.image.shape[-2:]
    typer.echo(f"wrote {output} ({width}x{height}) in {result.seconds:.1f} s, {result.evaluations} evaluations: "
               f"loss {result.loss:.4g} ({terms}){extra}")
