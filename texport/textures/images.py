"""Image I/O: any common format in, RGB float tensors in [0, 1] out; PNG (8 or 16 bit) written atomically."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from texport.errors import TexportError
from texport.files import atomic_path, write_error

READ_FORMATS = ("png", "jpg", "jpeg", "tga", "webp", "bmp")


def shipped_textures() -> dict[str, Path]:
    """Small example textures that ship inside the package (see texport/textures/shipped/README.md)."""
    folder = resources.files("texport.textures") / "shipped"
    return {
        Path(p.name).stem: Path(str(p))
        for p in folder.iterdir()
        if p.name.rsplit(".", 1)[-1].lower() in READ_FORMATS
    }


def resolve_texture(name_or_path: str | os.PathLike) -> Path:
    """A path to an existing file, or the name of a shipped texture (e.g. 'pebbles')."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = shipped_textures()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(sorted(shipped))
    raise TexportError(f"no such file: {path} (shipped textures: {names})")


def _to_float_rgb(img: Image.Image, top: float | None = None) -> np.ndarray:
    """HxWx3 float32 in [0, 1] from any Pillow mode (gray, 16-bit, palette, alpha: alpha is dropped).
    top: the white of integer gray modes (`integer_white`; by default this image's)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float32)
        top = top or integer_white(img)
        arr = np.clip(arr / top, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("P", "PA") and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike, device: torch.device | str = "cpu") -> torch.Tensor:
    """Read an image as a [1, 3, H, W] float32 tensor in [0, 1]; bad files raise TexportError."""
    with open_image(path) as img:
        img.load()
        arr = _to_float_rgb(img)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def integer_white(img: Image.Image) -> float:
    """The value of white in an integer gray image: 65535 for 16-bit modes, and for 32-bit ones whose
    values go above 255; else 255."""
    return 65535.0 if img.mode.startswith("I;16") or (img.mode == "I" and img.getextrema()[1] > 255) else 255.0


def check_side_limit(path: Path, width: int, height: int, size_limit: int) -> None:
    if max(width, height) > size_limit:
        raise TexportError(f"image too large: {path} is {width}x{height}, above the size limit of {size_limit} "
                           "(--size-limit)")


@contextlib.contextmanager
def open_image(path: str | os.PathLike, size_limit: int | None = None) -> Iterator[Image.Image]:
    """A Pillow image of the file, for the block, with bad files as one-line TexportErrors.

    Pillow refuses images whose declared pixel count is far above its default (a decompression bomb:
    a small file that decodes to gigabytes). With size_limit, our own limit on the declared sides
    replaces that guard: images within it are read whatever their pixel count, and Pillow's guard
    stays on, at size_limit squared pixels, for any other."""
    path = Path(path)
    if not path.exists():
        raise TexportError(f"no such file: {path}")
    if path.is_dir():
        raise TexportError(f"expected an image file, got a folder: {path}")
    saved = Image.MAX_IMAGE_PIXELS
    if size_limit is not None and saved is not None:
        Image.MAX_IMAGE_PIXELS = max(saved, size_limit * size_limit)
    try:
        with Image.open(path) as img:
            if size_limit is not None:
                check_side_limit(path, img.width, img.height, size_limit)
            yield img
    except UnidentifiedImageError:
        raise TexportError(f"not an image (or an unsupported format): {path}") from None
    except Image.DecompressionBombError as exc:
        raise TexportError(f"image too large to read safely: {path} ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise TexportError(f"cannot read image {path}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def parse_box(text: str | Sequence[int]) -> tuple[int, int, int, int]:
    """'X,Y,W,H' (pixels) -> (x, y, w, h)."""
    try:
        box = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        box = ()
    if len(box) != 4 or min(box) < 0 or box[2] == 0 or box[3] == 0:
        raise TexportError(f"crop must be X,Y,W,H in pixels with W, H > 0, got {text!r}")
    return box  # type: ignore[return-value]


def crop_image(image: torch.Tensor, box: Sequence[int]) -> torch.Tensor:
    """Cut (x, y, w, h) out of [B, 3, H, W], e.g. to drop a label printed on an exemplar."""
    x, y, w, h = box
    height, width = image.shape[-2:]
    if x + w > width or y + h > height:
        raise TexportError(f"crop {x},{y},{w},{h} does not fit inside the {width}x{height} image")
    return image[..., y:y + h, x:x + w]


def load_exemplar(path: str | os.PathLike, crop: Sequence[int] | None = None) -> torch.Tensor:
    """An exemplar as training and benchmarks see it: loaded, then cut to crop (x, y, w, h) if given."""
    image = load_image(path)
    return crop_image(image, crop) if crop else image


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Quantize [.., 3, H, W] floats in [0, 1] to the 8-bit values a saved PNG holds."""
    return (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)


def quantize(image: torch.Tensor) -> torch.Tensor:
    """The image exactly as an 8-bit file stores it, back in [0, 1] (metrics are taken on this)."""
    return to_uint8(image).float() / 255.0


def _png_16bit(rgb16: np.ndarray) -> bytes:
    """Encode HxWx3 uint16 as a 16-bit RGB PNG (Pillow cannot write 16-bit colour PNGs)."""
    h, w, _ = rgb16.shape
    raw = rgb16.astype(">u2").reshape(h, w * 3)
    rows = np.concatenate([np.zeros((h, 1), dtype=np.uint8), raw.view(np.uint8).reshape(h, w * 6)], axis=1)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_rows(band: torch.Tensor, bits: int = 8) -> np.ndarray:
    """A band [3, rows, width] in [0, 1] as PNG scanlines: uint8 [rows, 1 + width x 3 x bits / 8], each
    row its filter byte (0, none) and its samples, quantized as save_image quantizes."""
    hwc = band.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if bits == 8:
        raw = (hwc * 255.0).round().astype(np.uint8).reshape(hwc.shape[0], -1)
    else:
        raw = (hwc * 65535.0).round().astype(">u2").reshape(hwc.shape[0], -1).view(np.uint8)
    return np.concatenate([np.zeros((raw.shape[0], 1), dtype=np.uint8), raw], axis=1)


class PngRowWriter:
    """Writes an RGB PNG band by band (8 or 16 bits), holding one band at a time, atomically.

    For outputs too large to hold whole (texport tile: a 16384x16384 float image is 3.2 GB): rows
    are filtered (type 0) and deflated as they arrive; the file appears only when every row is in.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, bits: int = 8):
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise TexportError(f"output must be a .png file, got {path.name}")
        if bits not in (8, 16):
            raise TexportError(f"bits must be 8 or 16, got {bits}")
        self.path, self.width, self.height, self.bits = path, width, height, bits
        self.rows = 0
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        self._file = open(self._tmp, "wb")
        self._deflate = zlib.compressobj(6)
        self._file.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 2, 0, 0, 0)))

    def write(self, band: torch.Tensor) -> None:
        """band [3, rows, width] (or [1, 3, rows, width]) in [0, 1]."""
        band = band[0] if band.dim() == 4 else band
        if band.shape[0] != 3 or band.shape[2] != self.width or self.rows + band.shape[1] > self.height:
            raise ValueError(f"band {tuple(band.shape)} does not fit a {self.width}x{self.height} PNG at row {self.rows}")
        self.write_rows(png_rows(band, self.bits))

    def write_rows(self, rows: np.ndarray) -> None:
        """Scanlines already made by `png_rows` (elsewhere, e.g. on a cluster worker): only deflated here."""
        if rows.ndim != 2 or rows.shape[1] != 1 + self.width * 3 * self.bits // 8 or self.rows + rows.shape[0] > self.height:
            raise ValueError(f"rows {tuple(rows.shape)} do not fit a {self.width}x{self.height} {self.bits}-bit PNG at row {self.rows}")
        self._idat(self._deflate.compress(np.ascontiguousarray(rows, dtype=np.uint8)))
        self.rows += rows.shape[0]

    def _idat(self, data: bytes) -> None:
        if data:
            self._write(_chunk(b"IDAT", data))

    def _write(self, data: bytes | None) -> None:
        """Append to the temporary file (None: close it); a failed write (the disk full) drops the partial
        file and is one error naming the output."""
        try:
            if data is None:
                self._file.close()
            else:
                self._file.write(data)
        except OSError as exc:
            self.abort()
            raise write_error(self.path, exc) from None

    def close(self) -> Path:
        """Finish the file (all rows must have been written) and move it into place."""
        if self.rows != self.height:
            self.abort()
            raise ValueError(f"only {self.rows} of {self.height} rows were written")
        self._idat(self._deflate.flush())
        self._write(_chunk(b"IEND", b""))
        self._write(None)
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (the target, if it existed, is untouched)."""
        if not self._file.closed:
            with contextlib.suppress(OSError):  # the unflushed tail of a full disk: the file is dropped anyway
                self._file.close()
        try:
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass


def write_png_bands(path: str | os.PathLike, width: int, height: int, bits: int, bands: Iterable) -> Path:
    """Write bands top to bottom into one PNG, atomically: float [3, rows, width] tensors in [0, 1], or
    scanlines already made by `png_rows` (uint8 arrays). A failure or an interrupt leaves no file."""
    writer = PngRowWriter(path, width, height, bits)
    try:
        for band in bands:
            if isinstance(band, np.ndarray):
                writer.write_rows(band)
            else:
                writer.write(band)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def save_image(image: torch.Tensor, path: str | os.PathLike, bits: int = 8) -> Path:
    """Write a [1, 3, H, W] or [3, H, W] image in [0, 1] as PNG, atomically (8 or 16 bits per channel)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise TexportError(f"output must be a .png file, got {path.name}")
    data = encode_png(image, bits)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def encode_png(image: torch.Tensor, bits: int = 8) -> bytes:
    """The bytes save_image writes, in memory (a cluster worker encodes, the driver writes)."""
    if bits not in (8, 16):
        raise TexportError(f"bits must be 8 or 16, got {bits}")
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise TexportError("save_image writes one image; index the batch first")
        image = image[0]
    hwc = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if bits == 16:
        return _png_16bit((hwc * 65535.0).round().astype(np.uint16))
    buffer = io.BytesIO()
    Image.fromarray((hwc * 255.0).round().astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def add_png_text(png: bytes, key: str, value: str) -> bytes:
    """The PNG with a tEXt chunk key=value (Latin-1) right after its header, e.g. what made it."""
    header_end = 8 + 8 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC
    return png[:header_end] + _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")) + png[header_end:]


def read_png_text(path: str | os.PathLike, key: str) -> str | None:
    """The value of a PNG's tEXt chunk `key` (read from the chunks before the image data), or None
    when the file is missing, not a PNG or has no such chunk."""
    want = key.encode("latin-1") + b"\0"
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND"):
                    return None
                data = f.read(length)
                f.read(4)  # CRC
                if kind == b"tEXt" and data.startswith(want):
                    return data[len(want):].decode("latin-1")
    except OSError:
        return None


def side_by_side(images: list[torch.Tensor], height: int = 256, gap: int = 4) -> torch.Tensor:
    """Tile images in a row at a common height, for looking at results beside their exemplar."""
    resized = []
    for img in images:
        img = img if img.dim() == 4 else img.unsqueeze(0)
        h, w = img.shape[-2:]
        resized.append(F.interpolate(img.float().cpu(), size=(height, max(1, round(w * height / h))), mode="bilinear",
                                     align_corners=False, antialias=True))
    width = sum(r.shape[-1] for r in resized) + gap * (len(resized) - 1)
    canvas = torch.ones(1, 3, height, width)
    x = 0
    for r in resized:
        canvas[..., x : x + r.shape[-1]] = r.clamp(0, 1)
        x += r.shape[-1] + gap
    return canvas


def stack_rows(rows: list[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """Stack side_by_side rows vertically (left-aligned, white gaps): a contact sheet."""
    width = max(r.shape[-1] for r in rows)
    height = sum(r.shape[-2] for r in rows) + gap * (len(rows) - 1)
    canvas = torch.ones(1, 3, height, width)
    y = 0
    for r in rows:
        canvas[..., y : y + r.shape[-2], : r.shape[-1]] = r
        y += r.shape[-2] + gap
    return canvas
