"""texport in Blender: a texture synthesized by the `texport` command, packed into the .blend and wired
into the active object's active material (Image Texture -> Principled BSDF Base Color).

A thin client: Blender's Python cannot import torch, so the add-on runs the installed `texport`
executable (found in the project's .venv or on PATH, or set in the preferences) and loads the PNG it
writes; the command line stays the one implementation. Build the installable zip with
cli/examples/blender/build_zip.py.
"""

bl_info = {
    "name": "texport",
    "author": "texport",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Shader Editor > Sidebar (N) > texport",
    "description": "Synthesize textures with texport (texture networks, ProPO, Gatys) into a material",
    "category": "Material",
}

import bpy  # noqa: E402

from . import operators, panel, settings  # noqa: E402

CLASSES = settings.CLASSES + operators.CLASSES + panel.CLASSES


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    settings.register()


def unregister():
    settings.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
