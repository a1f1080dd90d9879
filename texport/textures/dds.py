"""DDS files for GPUs: a DX10 header, written here, and BC7, BC1, BC3 or RGBA8 data, with an optional mip chain.

Game engines and graphics APIs upload DDS data to the GPU as it is: the blocks stay compressed in
video memory and every level of the chain is already there. The file is (Microsoft, "DDS File
Layout" in the Programming Guide for DDS, and the DDS_HEADER, DDS_PIXELFORMAT and DDS_HEADER_DXT10
reference pages):

    "DDS "  the magic number (0x20534444)
    DDS_HEADER, 124 bytes: size 124; flags CAPS | HEIGHT | WIDTH | PIXELFORMAT | MIPMAPCOUNT, with
        LINEARSIZE (block-compressed: dwPitchOrLinearSize is the byte size of the top level) or PITCH
        (uncompressed: the bytes of one row); height, width; depth 0; the mip count; a DDS_PIXELFORMAT
        of 32 bytes whose FourCC "DX10" says the format is in the extension; caps TEXTURE, plus
        COMPLEX | MIPMAP when there is more than one level
    DDS_HEADER_DXT10, 20 bytes: the DXGI_FORMAT; resource dimension TEXTURE2D (3); misc flags 0;
        array size 1; miscFlags2 DDS_ALPHA_MODE_OPAQUE (3): the texture is RGB and readers treat its
        alpha as 1 (written as 255; the BC7 encoder stores 254 in some blocks)
    the levels, largest first, back to back.

A block-compressed level of W x H pixels is ceil(W / 4) x ceil(H / 4) blocks of 4x4 pixels, row by
row (8 bytes per block for BC1, 16 for BC3 and BC7), so sides that are not multiples of 4, and the
2x2 and 1x1 levels, still take whole blocks; the pixels beyond the edge repeat the edge pixel and
are never displayed. The writer follows what DirectXTex's DDS writer sets, e.g. the mip count and
its flag also for a single level.

Formats (DXGI_FORMAT values from Microsoft's DXGI_FORMAT enumeration): BC7 (98, sRGB 99), the
default: 8 bits per pixel and the closest to the PNG; BC1 (71, sRGB 72): 4 bits per pixel, visibly
blockier; BC3 (77, sRGB 78): BC1's colour block plus an alpha block, so twice BC1's size for the
same colours, for pipelines that expect BC3 (DXT5); RGBA8 (28, sRGB 29): uncompressed, exactly the PNG's
values. sRGB formats are the default because the images are colour as a PNG holds it
(sRGB-encoded): the GPU then decodes to linear light when it samples, and the mips are averaged in
linear light (texport.mips). The blocks come from etcpak (MIT, the bc7enc BC7 encoder and
etcpak's BC1/BC3 encoders); BC7 is asked for equal RGB weights, which minimise the error on the
stored values that the PSNR in benchmarks/RESULTS.md ("DDS quality") measures, rather than etcpak's
default luma weighting.

Level 0 holds the same 8-bit values as the PNG that save_image writes for the same image, and the
chain is built from those values, so `texport synth ... -o x.dds` equals `texport synth ... -o x.png`
followed by `texport dds x.png -o x.dds` with the same DDS options and --tileable. Images too large
to hold whole are written band by band by texport.dds_stream, with the same bytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from texport.errors import TexportError
from texport.files import atomic_path
from texport.textures.images import to_uint8
from texport.textures.mips import level_sizes, mip_chain

if TYPE_CHECKING:
    import torch

MAGIC = b"DDS "
DDSD_CAPS, DDSD_HEIGHT, DDSD_WIDTH, DDSD_PITCH = 0x1, 0x2, 0x4, 0x8
DDSD_PIXELFORMAT, DDSD_MIPMAPCOUNT, DDSD_LINEARSIZE, DDSD_DEPTH = 0x1000, 0x20000, 0x80000, 0x800000
DDPF_FOURCC = 0x4
DDSCAPS_COMPLEX, DDSCAPS_TEXTURE, DDSCAPS_MIPMAP = 0x8, 0x1000, 0x400000
DDSCAPS2_VOLUME = 0x200000
DDS_DIMENSION_TEXTURE2D, DDS_DIMENSION_TEXTURE3D = 3, 4
DDS_ALPHA_MODE_OPAQUE = 3
HEADER_BYTES = 4 + 124 + 20
BAND_ROWS = 256  # rows encoded per etcpak call: a Ctrl-C is seen between bands, the blocks are the same


@dataclass(frozen=True)
class Format:
    """One output format: its DXGI_FORMAT numbers and its storage (bytes per 4x4 block, 0: uncompressed)."""
    name: str
    dxgi: int
    dxgi_srgb: int
    block_bytes: int
    title: str


FORMATS = {
    "bc7": Format("bc7", 98, 99, 16, "BC7"),
    "bc1": Format("bc1", 71, 72, 8, "BC1"),
    "bc3": Format("bc3", 77, 78, 16, "BC3"),
    "rgba8": Format("rgba8", 28, 29, 0, "RGBA8"),
}
DEFAULT_FORMAT = "bc7"


@dataclass(frozen=True)
class DdsOptions:
    """What a DDS output holds: format, sRGB or linear (UNORM) DXGI format, and whether the mip chain."""
    format: str = DEFAULT_FORMAT
    srgb: bool = True
    mips: bool = False

    def describe(self) -> str:
        return f"{FORMATS[self.format].title} {'sRGB' if self.srgb else 'linear'}{', mips' if self.mips else ''}"


def check_format(name: str) -> Format:
    """The format called `name` (bc7, bc1, bc3, rgba8), or a one-line TexportError."""
    found = FORMATS.get(str(name).lower())
    if found is None:
        raise TexportError(f"unknown DDS format {name!r}: choose {', '.join(FORMATS)}")
    return found


def is_dds(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".dds"


def output_options(path: str | os.PathLike, format: str | None = None, srgb: bool | None = None, mips: bool = False,
                   bits: int = 8) -> DdsOptions | None:
    """The DdsOptions for an output at `path` ending in .dds, None for any other output (a PNG).

    None means "not given" for format and srgb, so DDS options given for a non-.dds output are refused
    (they would silently do nothing), as are an unknown format and 16 bits for a DDS (its formats hold 8).
    """
    path = Path(path)
    if not is_dds(path):
        given = [name for name, value in (("format", format is not None), ("sRGB/linear", srgb is not None),
                                          ("mips", mips)) if value]
        if given:
            raise TexportError(f"{' and '.join(given)} {'is a DDS option' if len(given) == 1 else 'are DDS options'}: "
                               f"the output must be a .dds file, got {path.name}")
        return None
    if bits != 8:
        raise TexportError(f"a DDS file holds 8 bits per channel; {bits}-bit output is for PNG files")
    return DdsOptions(check_format(format or DEFAULT_FORMAT).name, True if srgb is None else bool(srgb), bool(mips))


def level_bytes(format: str | Format, width: int, height: int) -> int:
    """Bytes of one level: whole 4x4 blocks for BCn (ceil of each side / 4, at least 1), 4 per pixel for RGBA8."""
    fmt = format if isinstance(format, Format) else check_format(format)
    if fmt.block_bytes == 0:
        return width * height * 4
    return max(1, (width + 3) // 4) * max(1, (height + 3) // 4) * fmt.block_bytes


def header(format: str | Format, width: int, height: int, levels: int = 1, srgb: bool = True, depth: int = 0) -> bytes:
    """The magic number, DDS_HEADER and DDS_HEADER_DXT10 (148 bytes) of a 2D texture with `levels` mip levels;
    depth > 0: a volume texture (DDSD_DEPTH, caps2 DDSCAPS2_VOLUME, resource dimension TEXTURE3D; the
    size field is one slice's, as DirectXTex writes it)."""
    fmt = format if isinstance(format, Format) else check_format(format)
    flags = DDSD_CAPS | DDSD_HEIGHT | DDSD_WIDTH | DDSD_PIXELFORMAT | DDSD_MIPMAPCOUNT | (DDSD_DEPTH if depth else 0)
    if fmt.block_bytes:
        flags |= DDSD_LINEARSIZE
        pitch_or_size = level_bytes(fmt, width, height)
    else:
        flags |= DDSD_PITCH
        pitch_or_size = width * 4
    caps = DDSCAPS_TEXTURE | (DDSCAPS_COMPLEX | DDSCAPS_MIPMAP if levels > 1 else 0)
    pixel_format = struct.pack("<II4s5I", 32, DDPF_FOURCC, b"DX10", 0, 0, 0, 0, 0)
    dds_header = struct.pack("<7I44x", 124, flags, height, width, pitch_or_size, depth, levels) + pixel_format + \
        struct.pack("<5I", caps, DDSCAPS2_VOLUME if depth else 0, 0, 0, 0)
    dimension = DDS_DIMENSION_TEXTURE3D if depth else DDS_DIMENSION_TEXTURE2D
    dx10 = struct.pack("<5I", fmt.dxgi_srgb if srgb else fmt.dxgi, dimension, 0, 1, DDS_ALPHA_MODE_OPAQUE)
    return MAGIC + dds_header + dx10


def _etcpak():
    try:
        import etcpak
    except ImportError:
        raise TexportError("BC formats need the etcpak package (pip install etcpak); rgba8 does not") from None
    return etcpak


def check_encoder(format: str | Format) -> None:
    """A one-line TexportError now, before any work, when `format` needs an encoder that is not installed."""
    fmt = format if isinstance(format, Format) else check_format(format)
    if fmt.block_bytes:
        _etcpak()


def _bc7_params():
    params = _etcpak().BC7CompressBlockParams()
    params.init_linear_weights()  # equal RGB(A) weights: the error on the stored values (module docstring)
    return params


def encode_level(rgb: np.ndarray, format: str | Format) -> bytes:
    """One level ([H, W, 3] uint8) in `format`'s storage: BCn blocks (edge pixels repeated to whole
    blocks) or RGBA8 rows; alpha is 255."""
    fmt = format if isinstance(format, Format) else check_format(format)
    height, width = rgb.shape[:2]
    rgba = np.concatenate([rgb, np.full((height, width, 1), 255, dtype=np.uint8)], axis=2)
    if fmt.block_bytes == 0:
        return np.ascontiguousarray(rgba).tobytes()
    etcpak = _etcpak()
    pad_h, pad_w = -height % 4, -width % 4
    if pad_h or pad_w:
        rgba = np.pad(rgba, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    params = _bc7_params() if fmt.name == "bc7" else None
    encode = {"bc1": etcpak.compress_bc1, "bc3": etcpak.compress_bc3,
              "bc7": lambda data, w, h: etcpak.compress_bc7(data, w, h, params)}[fmt.name]
    bands = []
    for top in range(0, rgba.shape[0], BAND_ROWS):  # block rows are stored one after another
        band = np.ascontiguousarray(rgba[top:top + BAND_ROWS])
        bands.append(encode(band.tobytes(), band.shape[1], band.shape[0]))
    data = b"".join(bands)
    assert len(data) == level_bytes(fmt, width, height)
    return data


def stored_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """The [H, W, 3] uint8 values a DDS (and a PNG) stores for a [1, 3, H, W] or [3, H, W] image in [0, 1]
    (an [H, W, 3] uint8 array is taken as it is)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TexportError(f"expected an [H, W, 3] uint8 array, got {image.dtype} {list(image.shape)}")
        return np.ascontiguousarray(image)

    if image.dim() == 4:
        if image.shape[0] != 1:
            raise TexportError("a DDS file holds one image; index the batch first")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise TexportError(f"expected an RGB image [3, H, W], got {list(image.shape)}")
    return to_uint8(image).permute(1, 2, 0).cpu().numpy()


def encode_dds(image: torch.Tensor | np.ndarray, format: str = DEFAULT_FORMAT, srgb: bool = True, mips: bool = False,
               tileable: bool = False) -> bytes:
    """The bytes of a DDS file holding `image` (see stored_rgb), with the full mip chain if mips
    (wrapping around if tileable; texport.mips)."""

    fmt = check_format(format)
    level0 = stored_rgb(image)
    height, width = level0.shape[:2]
    if min(width, height) < 1:
        raise TexportError(f"cannot write an empty {width}x{height} image")
    levels = len(level_sizes(width, height)) if mips else 1
    parts = [header(fmt, width, height, levels, srgb), encode_level(level0, fmt)]
    if levels > 1:
        chain = mip_chain(level0.astype(np.float32) / 255.0, tileable=tileable, srgb=srgb)
        parts += [encode_level(np.round(level * 255.0).astype(np.uint8), fmt) for level in chain[1:]]
    return b"".join(parts)


def save_dds(image: torch.Tensor | np.ndarray, path: str | os.PathLike, format: str = DEFAULT_FORMAT, srgb: bool = True,
             mips: bool = False, tileable: bool = False) -> Path:
    """Write `image` as a DDS file, atomically: encoded in memory first, so an error or Ctrl-C leaves
    no partial file and an existing file untouched."""
    path = Path(path)
    if not is_dds(path):
        raise TexportError(f"output must be a .dds file, got {path.name}")
    data = encode_dds(image, format, srgb, mips, tileable)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
