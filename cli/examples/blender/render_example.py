"""Render the default cube with a texport texture in its material, through the add-on, with Cycles on
the CPU: the picture in benchmarks/images/blender_cube.png.

    blender -b --factory-startup --python cli/examples/blender/render_example.py -- \\
        [--output benchmarks/images/blender_cube.png] [--model pebbles] [--seed 3] [--size 512] [--samples 32]

The add-on is enabled from this source folder (not installed, so Blender's user folders are left
alone) and runs the project's .venv/bin/texport, as it does for a user. Denoising is off: Debian's
Blender is built without OpenImageDenoise.
"""

import argparse
import os
import sys

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def main(argv: list) -> None:
    parser = argparse.ArgumentParser(prog="render_example.py")
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "images", "blender_cube.png"))
    parser.add_argument("--model", default="pebbles")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--size", default="512")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--resolution", default="960x540")
    args = parser.parse_args(argv)

    sys.path.insert(0, HERE)
    bpy.ops.preferences.addon_enable(module="texport_blender")
    s = bpy.context.scene.texport
    s.source, s.network, s.size, s.seed, s.tileable = "NETWORK", args.model, args.size, args.seed, True
    bpy.context.view_layer.objects.active = bpy.data.objects["Cube"]
    if "FINISHED" not in bpy.ops.texport.synthesize():
        raise SystemExit("render_example.py: the add-on did not synthesize the texture")

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = map(int, args.resolution.split("x"))
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    partial = args.output + ".partial.png"  # renamed when complete: a failed render leaves the old picture
    scene.render.filepath = partial
    bpy.ops.render.render(write_still=True)
    os.replace(partial, args.output)
    print(f"wrote {args.output} ({args.resolution}, {args.samples} samples): the cube with "
          f"{bpy.context.active_object.active_material.node_tree.nodes.active.image.name}")


main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
