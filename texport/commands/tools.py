"""`texport dds`, `texport models` and `texport info`: converting a tile, listing models, this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import typer

import texport.models.handle as handle
import texport.objectives.descriptor as d
from texport import __version__
import texport.defaults as D
from texport.commands.options import (
    DdsFormat,
    DdsMips,
    DdsSrgb,
    check_output,
    progress_bar,
)
from texport.errors import TexportError
from texport.models.checkpoints import load_stored_exemplar, read_manifest, stored_exemplar_names, training_chain
from texport.textures.dds import check_encoder, output_options
from texport.textures.dds_stream import write_dds_bands
from texport.textures.image_rows import image_bands
from texport.textures.images import resolve_texture, save_image, shipped_textures


def dds_command(
    image: str = typer.Argument(..., help="Image to convert (PNG, JPEG, TGA, WebP, BMP), e.g. a 'texport tile' output, or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .dds (written atomically)."),
    dds_format: DdsFormat = None,
    srgb: DdsSrgb = None,
    mips: DdsMips = False,
    tileable: bool = typer.Option(False, "--tileable", help="The image wraps around: so do its mips."),
    size_limit: int = typer.Option(D.DDS_SIZE_LIMIT, "--size-limit", help="Largest accepted side of the image (Pillow's "
                                                                          "decompression-bomb guard stays on above it)."),
) -> None:
    """Convert an image into a DDS GPU texture (BC7, BC1, BC3 or RGBA8; with --mips, the mip chain)."""
    check_output(output, (".dds",))
    options = output_options(output, dds_format, srgb, mips)
    check_encoder(options.format)
    width, height, bands = image_bands(resolve_texture(image), size_limit)
    bar, update = progress_bar(height, f"dds {width}x{height}", show_loss=False)
    with bar:
        write_dds_bands(output, width, height, options, tileable, _counted(bands, update))
    typer.echo(f"wrote {output} ({width}x{height}, {options.describe()})")


def _counted(bands, update):
    """The bands, the progress bar moved by each one's rows."""
    done = 0
    for band in bands:
        yield band
        done += band.shape[0]
        update(done)


def models(
    name: Optional[str] = typer.Argument(None, help="Show one model's full manifest (name or path)."),
    exemplar: Optional[Path] = typer.Option(None, "--exemplar", help="Write the exemplar(s) the model keeps to this PNG "
                                                                     "(a solid model's y and z ones, if it has them, as OUT-y.png, OUT-z.png)."),
) -> None:
    """List the shipped models, or print one model's manifest as JSON."""
    if exemplar is not None:
        if name is None:
            raise TexportError("--exemplar needs a model name or file")
        check_output(exemplar)
        path = handle.resolve_model(name)
        read_manifest(path)  # a texport model, or one line saying what it is not
        names = stored_exemplar_names(path)
        if not names:
            raise TexportError(f"{path.name} keeps no exemplar (ProPO learns from a dataset; files from before "
                               "exemplars were kept have none)")
        written = []
        for stored in names:
            out = exemplar if not stored else exemplar.with_name(f"{exemplar.stem}-{stored}{exemplar.suffix}")
            written.append(str(save_image(load_stored_exemplar(path, stored), out)))
        typer.echo(f"wrote {', '.join(written)}")
        return
    if name is not None:
        typer.echo(json.dumps(read_manifest(handle.resolve_model(name)), indent=2, sort_keys=True))
        return
    shipped = handle.shipped_models()
    if not shipped:
        typer.echo(f"no shipped models in {handle.trained_folder()}")
        return
    typer.echo(f"{'name':<16} {'kind':<8} {'trained on':<14} {'iters':>10} {'loss':>8}  descriptor")
    for model_name, path in shipped.items():
        m = read_manifest(path)
        t = m.get("training", {})
        iters = "+".join(str(run.get("iterations", "?")) for run in training_chain(t))  # fine-tuned: each start's, then its own
        source = (m.get("texture") or m.get("style") or {}).get("name") or (m.get("dataset") or {}).get("source", "?")  # style networks: the style image
        typer.echo(f"{model_name:<16} {m.get('kind', '?'):<8} {source:<14} "
                   f"{iters:>10} {t.get('final_loss', float('nan')):>8.4g}  {m.get('descriptor', '?')[:28]}")


def info() -> None:
    """Versions, devices, shipped textures and which descriptor weights are available."""
    typer.echo(f"texport {__version__}, torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    typer.echo(f"shipped textures: {', '.join(sorted(shipped_textures()))}")
    for name in ("vgg19", "vgg16-hed"):
        try:
            desc = d.build_descriptor(name, ["pool4"])
            typer.echo(f"descriptor {name}: available ({desc.source}), identity through pool4 {desc.identity}")
        except TexportError as exc:
            typer.echo(f"descriptor {name}: unavailable ({exc})")
