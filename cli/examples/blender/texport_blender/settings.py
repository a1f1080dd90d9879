"""The panel's settings (one set per scene), the add-on's preferences (where texport is), and the
Request they make."""

import threading
from dataclasses import replace

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from . import material as mat
from .runner import Request, RunError, automatic_texport, find_texport, shipped_networks

ADDON = __package__

_networks: list[str] = []
_networks_lock = threading.Lock()


def preferences(context=None):
    return (context or bpy.context).preferences.addons[ADDON].preferences


def scene(context=None):
    return (context or bpy.context).scene.texport


def networks(_settings, _context, _text) -> list[str]:
    """The shipped texture networks, asked of texport once per session (the name field's search list)."""
    with _networks_lock:
        if not _networks:
            try:
                _networks.extend(shipped_networks(find_texport(preferences().texport_path)))
            except RunError:
                pass
        return list(_networks)


class TexportPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    texport_path: StringProperty(
        name="texport executable", subtype="FILE_PATH", default="",
        description="The texport command (e.g. .venv/bin/texport after cli/install.sh); empty: the project's .venv, "
                    "then PATH")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "texport_path")
        if not self.texport_path:
            found = automatic_texport()
            layout.label(text=f"Found: {found}" if found else "Not found in the project's .venv nor on PATH: set it here",
                         icon="CHECKMARK" if found else "ERROR")


class TexportSettings(bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Source", default="NETWORK",
        items=[("NETWORK", "Network", "A texture network that ships with texport (texport models)"),
               ("FILE", "Model file", "A model file: .safetensors, exported .onnx or TensorRT engine"),
               ("PROPO", "ProPO", "ProPO (Shi & Qiao 2020): a texture like any image, one forward pass"),
               ("GATYS", "Gatys", "Optimization (Gatys et al. 2015): the slow reference, minutes per image")])
    network: StringProperty(name="Network", default="pebbles", search=networks,
                            description="A shipped texture network (texport models)")
    model_file: StringProperty(name="Model", subtype="FILE_PATH", description="A .safetensors, .onnx or engine file")
    texture_image: PointerProperty(name="Image", type=bpy.types.Image,
                                   description="ProPO's target: a Blender image (used instead of the file when set)")
    texture_file: StringProperty(name="File", subtype="FILE_PATH", description="ProPO's target image file")
    exemplar: StringProperty(name="Exemplar", subtype="FILE_PATH", default="pebbles",
                             description="Gatys' exemplar: an image file or a shipped texture name")
    iters: IntProperty(name="Evaluations", default=400, min=1, soft_max=2000,
                       description="Gatys' budget of loss/gradient evaluations (texport gatys --iters)")
    size: StringProperty(name="Size", default="512", description="N or WxH (texport's --size)")
    seed: IntProperty(name="Seed", default=0, min=0, description="The same seed gives the same texture")
    tileable: BoolProperty(name="Tileable", default=True,
                           description="The texture wraps around (sizes on the model's grid, multiples of 16)")
    refine: IntProperty(name="Refine", default=0, min=0, soft_max=400,
                        description="Then N Gatys evaluations of the sample (slow: seconds each on a CPU)")
    backend: EnumProperty(
        name="Backend", default="DEFAULT",
        items=[("DEFAULT", "Default", "texport's default for the model (torch for a texport model)"),
               ("torch", "torch", ""), ("onnxruntime", "onnxruntime", ""), ("openvino", "OpenVINO", ""),
               ("tensorrt", "TensorRT", "Engines only"), ("auto", "auto", "The fastest one here")])


def with_image_file(request: Request, folder: str) -> Request:
    """A ProPO request from a Blender image, with that image written to a file texport reads."""
    if not request.image:
        return request
    image = bpy.data.images.get(request.image)
    if image is None:
        raise RunError(f"image {request.image} is gone")
    return replace(request, texture=mat.image_as_file(image, folder))


def request(context, folder: str) -> Request:
    """The panel's Request; a Blender image as ProPO's target is written to `folder`."""
    s = scene(context)
    source = s.source.lower()
    model = {"network": s.network, "file": bpy.path.abspath(s.model_file)}.get(source, "")
    texture, image = "", ""
    if source == "propo":
        image = s.texture_image.name if s.texture_image is not None else ""
        texture = "" if image else bpy.path.abspath(s.texture_file)
    elif source == "gatys":
        texture = bpy.path.abspath(s.exemplar)
    made = Request(source=source, model=model, texture=texture, image=image, size=s.size, seed=s.seed,
                   tileable=s.tileable, refine=s.refine, backend="" if s.backend == "DEFAULT" else s.backend,
                   iters=s.iters)
    return with_image_file(made, folder)


CLASSES = (TexportPreferences, TexportSettings)


def register() -> None:
    bpy.types.Scene.texport = PointerProperty(type=TexportSettings)


def unregister() -> None:
    del bpy.types.Scene.texport
    _networks.clear()
