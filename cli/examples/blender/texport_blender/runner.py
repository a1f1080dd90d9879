"""The add-on's side of the `texport` command, without Blender: where the executable is, the command
line of a request, and one run in a background thread that reports its progress and can be cancelled.

Blender's Python cannot import torch, so the add-on is a thin client: it runs the `texport` executable
and reads back the PNG it wrote (texport writes its outputs atomically, so a failed or cancelled run
leaves no file). Nothing here imports bpy, so tests exercise it with any Python.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

try:  # written by build_zip.py: the checkout the zip was built from, whose .venv holds texport
    from ._project import ROOT as PROJECT
except ImportError:  # run from the source tree: the checkout is four folders above texport_blender/
    PROJECT = str(Path(__file__).resolve().parents[4])

SOURCES = ("network", "file", "propo", "gatys")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEPS = re.compile(r"(\d+)/(\d+)")


class RunError(Exception):
    """A one-line message for Blender's error report; the file has not been changed."""


def project_texport(root: str | None = PROJECT) -> str | None:
    """texport in the project's .venv (cli/install.sh puts it there), if it is there."""
    if not root:
        return None
    for relative in ("bin/texport", "Scripts/texport.exe"):
        path = os.path.join(root, ".venv", relative)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def automatic_texport(root: str | None = PROJECT) -> str | None:
    """Where texport is found without a preference: the project's .venv first, then PATH."""
    return project_texport(root) or shutil.which("texport")


def find_texport(preference: str = "", root: str | None = PROJECT) -> str:
    """The executable to run: the preference when it is set (and must then exist), else automatic_texport."""
    if preference:
        path = os.path.abspath(os.path.expanduser(preference))
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise RunError(f"texport executable not found at {preference}: correct it in the add-on's preferences "
                           f"(Edit > Preferences > Add-ons > texport), or clear it to search the project's .venv and PATH")
        return path
    found = automatic_texport(root)
    if found is None:
        where = f"{root}/.venv or " if root else ""
        raise RunError(f"texport executable not found (in {where}PATH): run cli/install.sh, or set its path in the "
                       f"add-on's preferences (Edit > Preferences > Add-ons > texport)")
    return found


def stem(text: str) -> str:
    """A shipped name as it is, a file by its name without folders and extension."""
    return Path(text).stem if ("/" in text or "\\" in text or "." in Path(text).name) else text


@dataclass(frozen=True)
class Request:
    """What the panel asks for: the source and the options every texport run takes.

    `source` is one of SOURCES: a shipped texture network (`model` its name), a model file (`model` its
    path), ProPO on an image (`texture` a file), or Gatys on an exemplar (`texture` a shipped texture
    name or a file). `image` is the Blender Image a ProPO texture came from, if it did: `texture` is
    then a temporary copy of it, written again for each run, and the image's name names the result.
    """

    source: str
    model: str = ""
    texture: str = ""
    size: str = "512"
    seed: int = 0
    tileable: bool = True
    refine: int = 0
    backend: str = ""  # empty: texport's default for the model
    iters: int = 400  # Gatys evaluations
    image: str = ""

    def check(self) -> None:
        """The add-on's own checks, before anything runs; texport checks everything else and says so."""
        if self.source not in SOURCES:
            raise RunError(f"unknown source {self.source!r} (one of {', '.join(SOURCES)})")
        if self.source in ("network", "file") and not self.model.strip():
            raise RunError("no model: choose a shipped texture network or a model file")
        if self.source == "file" and not os.path.isfile(self.model):
            raise RunError(f"model file not found: {self.model}")
        if self.source in ("propo", "gatys") and not self.texture.strip():
            raise RunError("no texture: choose an image file" + (" or an Image" if self.source == "propo" else ""))
        if self.source == "propo" and not os.path.isfile(self.texture):
            raise RunError(f"texture file not found: {self.texture}")
        if not self.size.strip():
            raise RunError("no size: give N or WxH")

    def name(self) -> str:
        """The image's name in Blender: model (or method and texture) and seed, e.g. pebbles-seed3."""
        what = {"network": lambda: self.model.strip(), "file": lambda: stem(self.model),
                "propo": lambda: f"propo-{self.image or stem(self.texture)}",
                "gatys": lambda: f"gatys-{self.image or stem(self.texture)}"}[self.source]()
        return f"{what}-seed{self.seed}"

    def argv(self, texport: str, output: str) -> list[str]:
        """texport's command line for this request, writing `output`."""
        if self.source == "gatys":
            args = ["gatys", self.texture, "--iters", str(self.iters)]
        elif self.source == "propo":
            args = ["synth", "propo", "--texture", self.texture]
        else:
            args = ["synth", self.model.strip()]
        args += ["--size", self.size.strip(), "--seed", str(self.seed)]
        if self.tileable:
            args.append("--tileable")
        if self.source != "gatys":
            args += ["--refine", str(self.refine)] if self.refine else []
            args += ["--backend", self.backend] if self.backend else []
        return [texport, *args, "-o", output]

    def record(self) -> dict:
        """What is stored on the image, so that "New sample" runs it again with another seed (a Blender
        image's temporary copy is not kept: it is written again)."""
        return asdict(replace(self, texture="") if self.image else self)

    @classmethod
    def from_record(cls, record: dict) -> "Request":
        """A Request from record() as Blender keeps it (booleans come back as integers)."""
        kinds = {"seed": int, "refine": int, "iters": int, "tileable": bool}
        return cls(**{k: kinds.get(k, str)(record[k]) for k in cls.__dataclass_fields__ if k in record})

    def next_sample(self) -> "Request":
        return replace(self, seed=self.seed + 1)


def one_line(stderr: str, returncode: int) -> str:
    """texport's one-line message out of its stderr (progress bars, colour codes and all)."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", ANSI.sub("", stderr)) if ln.strip()]
    for line in reversed(lines):
        if line.startswith("texport:"):
            return line
    if lines:
        return f"texport failed (exit {returncode}): {lines[-1]}"
    return f"texport failed (exit {returncode}) without a message"


class Job:
    """One texport run in a background thread, which drains its stderr (so the pipe never fills) and
    reads the progress bar's "done/total" from it; Blender's timer polls `fraction` and `done`, Esc
    calls cancel(). The PNG goes to a temporary folder that close() removes."""

    def __init__(self, request: Request, texport: str, folder: str | None = None, env: dict | None = None):
        self.request = request
        self.folder = folder or tempfile.mkdtemp(prefix="texport-blender-")
        self.output = os.path.join(self.folder, f"{request.name()}.png")
        self.argv = request.argv(texport, self.output)
        self.fraction = 0.0
        self.error: str | None = None
        self.cancelled = False
        self._done = threading.Event()
        # FORCE_COLOR: rich draws its progress bar (and so its "done/total") into a pipe too
        env = dict(os.environ if env is None else env, FORCE_COLOR="1", COLUMNS="120")
        try:
            self._process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            self.close()
            raise RunError(f"cannot run {texport}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._watch, name="texport", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _watch(self) -> None:
        chunks = []
        stream = self._process.stderr
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            chunks.append(chunk)
            tail = ANSI.sub("", b"".join(chunks[-4:]).decode("utf-8", "replace"))
            found = STEPS.findall(tail)
            if found and int(found[-1][1]) > 0:
                self.fraction = min(1.0, int(found[-1][0]) / int(found[-1][1]))
        code = self._process.wait()
        if self.cancelled:
            self.error = "texport cancelled"
        elif code != 0:
            self.error = one_line(b"".join(chunks).decode("utf-8", "replace"), code)
        elif not os.path.isfile(self.output):
            self.error = f"texport exited without writing {os.path.basename(self.output)}"
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def cancel(self, grace: float = 10.0) -> None:
        """Stop the run: SIGTERM (texport exits cleanly, writing nothing), then kill if it does not."""
        if self.done:
            return
        self.cancelled = True
        try:
            self._process.terminate()  # SIGTERM on POSIX
        except OSError:
            pass
        if not self.wait(grace):
            self._process.kill()
            self.wait()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def shipped_networks(texport: str, timeout: float = 60.0) -> list[str]:
    """The shipped texture networks, read from `texport models` (its table: name, kind, ...)."""
    try:
        out = subprocess.run([texport, "models"], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = [line.split() for line in out.splitlines()[1:]]
    return [row[0] for row in rows if len(row) > 1 and row[1] == "texnet"]
