"""Run inside Blender by tests/test_blender.py: `blender -b --factory-startup --python THIS -- CONFIG.json`.

CONFIG's "mode" is "make" (install and enable the add-on from the built zip, try the error paths on
the default cube, synthesize, save, New sample, save again, ProPO on an Image) or "read" (reopen
the saved files and dump each material's texture: node links, image record, packed pixels as bytes).
Results go to CONFIG's "report" as JSON; the test asserts on them (Blender's Python has no numpy).
"""

import array
import json
import os
import sys
import tempfile
import traceback

import bpy

ADDON = "texport_blender"


def material_state(obj) -> dict:
    """Everything the add-on could touch: slots, nodes, links, images."""
    state = {"slots": [s.material.name if s.material else None for s in obj.material_slots],
             "materials": sorted(m.name for m in bpy.data.materials), "images": sorted(i.name for i in bpy.data.images)}
    for m in bpy.data.materials:
        if m.use_nodes:
            state[m.name] = {"nodes": sorted((n.name, n.bl_idname) for n in m.node_tree.nodes),
                             "links": sorted(link_names(m.node_tree))}
    return state


def link_names(tree) -> list:
    return [(l.from_node.bl_idname, l.from_socket.name, l.to_node.bl_idname, l.to_socket.name) for l in tree.links]


def leftovers() -> list:
    return sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith("texport-blender-"))


def expect_error(report: dict, key: str, obj, **settings) -> None:
    """Run Synthesize with these settings; record its error message and whether the file stayed as it was."""
    s = bpy.context.scene.texport
    for name, value in settings.items():
        setattr(s, name, value)
    before, temp = material_state(obj), leftovers()
    try:
        result = bpy.ops.texport.synthesize()
        report[key] = {"raised": False, "result": sorted(result)}
    except RuntimeError as exc:  # an operator's ERROR report reaches a script as RuntimeError("Error: ...")
        report[key] = {"raised": True, "message": str(exc).strip()}
    report[key]["unchanged"] = material_state(obj) == before
    report[key]["no_temporary_files"] = leftovers() == temp


def base_color_node(obj):
    base = next(n for n in obj.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled").inputs["Base Color"]
    return base.links[0].from_node if base.is_linked else None


def texture_of(obj) -> dict:
    m = obj.active_material
    found = {"material": m.name, "links": sorted(link_names(m.node_tree))}
    node = base_color_node(obj)
    image = node.image if node is not None and node.bl_idname == "ShaderNodeTexImage" else None
    if image is None:
        return found
    found.update(image=image.name, pointer=image.as_pointer(), size=list(image.size), packed=image.packed_file is not None,
                 record=image["texport"].to_dict() if "texport" in image else None, node=node.name,
                 colorspace=image.colorspace_settings.name, extension=node.extension, users=image.users)
    return found


def dump_pixels(obj, path: str) -> None:
    """The Base Color image's pixels as 8-bit RGBA, top row first (Blender stores the bottom row first)."""
    image = base_color_node(obj).image
    w, h = image.size
    values = array.array("f", bytes(4 * w * h * 4))
    image.pixels.foreach_get(values)
    rows = [values[y * w * 4:(y + 1) * w * 4] for y in range(h)][::-1]
    with open(path, "wb") as f:
        for row in rows:
            f.write(bytes(min(255, max(0, round(v * 255))) for v in row))


def make(config: dict, report: dict) -> None:
    bpy.ops.preferences.addon_install(filepath=config["zip"])
    bpy.ops.preferences.addon_enable(module=ADDON)
    report["enabled"] = ADDON in bpy.context.preferences.addons
    prefs = bpy.context.preferences.addons[ADDON].preferences
    obj = bpy.context.active_object
    report["object"] = obj.name

    prefs.texport_path = os.path.join(config["work"], "no-such-folder", "texport")
    expect_error(report, "missing", obj, source="NETWORK", network="pebbles", size="256", seed=3, tileable=True)
    prefs.texport_path = config["texport"]
    expect_error(report, "failing", obj, size="100")
    expect_error(report, "bad_input", obj, source="FILE", model_file=os.path.join(config["work"], "missing.safetensors"))

    s = bpy.context.scene.texport
    s.source, s.network, s.size, s.seed, s.tileable = "NETWORK", "pebbles", "256", 3, True
    report["synthesize"] = sorted(bpy.ops.texport.synthesize())
    report["first"] = texture_of(obj)
    bpy.ops.wm.save_as_mainfile(filepath=config["blend1"])

    report["new_sample"] = sorted(bpy.ops.texport.new_sample())
    report["second"] = texture_of(obj)
    report["panel_seed"] = s.seed
    bpy.ops.wm.save_as_mainfile(filepath=config["blend2"])

    s.source, s.texture_image, s.size, s.seed = "PROPO", bpy.data.images[report["second"]["image"]], "64", 1
    report["propo"] = sorted(bpy.ops.texport.synthesize())
    report["propo_texture"] = texture_of(obj)
    dump_pixels(obj, config["propo_pixels"])
    report["temporary_files"] = leftovers()


def read(config: dict, report: dict) -> None:
    for key in ("blend1", "blend2"):
        bpy.ops.wm.open_mainfile(filepath=config[key])
        obj = bpy.data.objects[config["object"]]
        report[key] = texture_of(obj)
        dump_pixels(obj, config[key] + ".rgba")


def main() -> None:
    config = json.loads(open(sys.argv[sys.argv.index("--") + 1]).read())
    report: dict = {}
    try:
        {"make": make, "read": read}[config["mode"]](config, report)
    except Exception:
        report["exception"] = traceback.format_exc()
    with open(config["report"], "w") as f:
        json.dump(report, f, indent=1)


main()
