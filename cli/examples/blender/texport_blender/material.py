"""Blender's side: the material a texture goes into, the nodes that carry it, and the packed image.

Everything here runs only after texport has written its PNG, so a failed or cancelled run changes
nothing in the file. The PNG is packed as texport wrote it (its bytes, not a re-encoding), so the
.blend holds exactly the command line's image.
"""

from __future__ import annotations

import os

import bpy

from .runner import Request, RunError

RECORD = "texport"  # the image's custom property holding its Request (New sample reruns it with the next seed)


def check_object(obj) -> None:
    """The active object can carry a material (checked before any run)."""
    if obj is None:
        raise RunError("no active object: select the object whose material gets the texture")
    if not hasattr(obj.data, "materials"):
        raise RunError(f"{obj.name} ({obj.type.lower()}) cannot have a material")


def target_material(obj) -> bpy.types.Material:
    """The active object's active material; a new one in its active (or first) slot if it has none."""
    if obj.active_material is not None:
        return obj.active_material
    material = bpy.data.materials.new(f"{obj.name}-texport")
    if len(obj.material_slots) == 0:
        obj.data.materials.append(material)
    else:
        obj.material_slots[obj.active_material_index].material = material
    return material


def principled(tree) -> bpy.types.Node:
    """The Principled BSDF the material shows: the one the active output's Surface reads, else any; a new
    one (wired to the output's Surface when that is free) if there is none."""
    nodes, links = tree.nodes, tree.links
    output = next((n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial" and n.is_active_output), None)
    output = output or next((n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial"), None)
    surface = output.inputs["Surface"] if output is not None else None
    if surface is not None and surface.is_linked and surface.links[0].from_node.bl_idname == "ShaderNodeBsdfPrincipled":
        return surface.links[0].from_node
    found = next((n for n in nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"), None)
    if found is not None:
        return found
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    if output is None:
        output = nodes.new("ShaderNodeOutputMaterial")
        output.location = (300, 300)
        surface = output.inputs["Surface"]
    bsdf.location = (output.location.x - 300, output.location.y)
    if not surface.is_linked:
        links.new(bsdf.outputs["BSDF"], surface)
    return bsdf


def base_color_texture(material) -> bpy.types.Node | None:
    """The Image Texture node feeding the Principled BSDF's Base Color, if there is one."""
    if material is None or not material.use_nodes:
        return None
    for node in material.node_tree.nodes:
        if node.bl_idname == "ShaderNodeBsdfPrincipled":
            base = node.inputs["Base Color"]
            if base.is_linked and base.links[0].from_node.bl_idname == "ShaderNodeTexImage":
                return base.links[0].from_node
    return None


def wire(material, image) -> bpy.types.Node:
    """Image Texture -> Principled BSDF Base Color in `material`, nodes created where missing."""
    material.use_nodes = True
    tree = material.node_tree
    bsdf = principled(tree)
    base = bsdf.inputs["Base Color"]
    texture = base.links[0].from_node if base.is_linked else None
    if texture is None or texture.bl_idname != "ShaderNodeTexImage":
        texture = tree.nodes.new("ShaderNodeTexImage")
        texture.location = (bsdf.location.x - 320, bsdf.location.y)
        tree.links.new(texture.outputs["Color"], base)
    texture.image = image
    texture.extension = "REPEAT"
    tree.nodes.active = texture
    return texture


def pack_png(path: str, request: Request, image=None) -> bpy.types.Image:
    """texport's PNG packed into the .blend: a new image, or `image` replaced in place (same datablock,
    so every node using it follows), named after model and seed, with the request recorded on it."""
    name = request.name()
    fresh = bpy.data.images.load(path, check_existing=False)
    if fresh.size[0] == 0:  # read before anything else changes
        bpy.data.images.remove(fresh)
        raise RunError(f"Blender could not read texport's PNG {os.path.basename(path)}")
    if image is None:
        image = fresh
    else:
        bpy.data.images.remove(fresh)
        if image.packed_file is not None:
            image.unpack(method="REMOVE")
        image.source = "FILE"
        image.filepath = path
        image.reload()
    image.pack()
    image.name = name
    image.filepath = f"//textures/{name}.png"  # where Blender's "Unpack" writes it; the packed bytes stay
    image[RECORD] = request.record()
    return image


def image_as_file(image, folder: str) -> str:
    """A file texport can read for an Image datablock: its own file when that is current on disk, else a
    PNG copy of its pixels in `folder` (packed, generated or edited images)."""
    if image.source == "FILE" and image.packed_file is None and not image.is_dirty:
        path = bpy.path.abspath(image.filepath, library=image.library)
        if os.path.isfile(path):
            return path
    if not image.has_data and image.size[0] == 0:
        raise RunError(f"image {image.name} has no pixels")
    path = os.path.join(folder, "texture.png")
    copy = image.copy()  # saved as a PNG without touching the original's format or path
    try:
        copy.file_format = "PNG"
        copy.save(filepath=path)
    finally:
        bpy.data.images.remove(copy)
    return path
