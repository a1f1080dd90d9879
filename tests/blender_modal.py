"""Run inside Blender with a window (under xvfb-run) by tests/test_blender.py:
`blender --factory-startup --enable-event-simulate --python THIS -- CONFIG.json`.

The add-on's modal path, which background Blender cannot run: Synthesize invoked as from the panel
(texport in a background thread, the timer polling it, the progress read from its bar), the panel
drawn, then a long Gatys run cancelled with a simulated Esc. Steps run from a bpy.app.timers
function, so Blender's event loop runs between them; results go to CONFIG's "report" as JSON.
"""

import json
import os
import sys
import tempfile
import time
import traceback

import bpy

config = json.loads(open(sys.argv[sys.argv.index("--") + 1]).read())
report: dict = {}


def note(**values) -> None:
    report.update(values)
    with open(config["report"], "w") as f:
        json.dump(report, f, indent=1)


bpy.ops.preferences.addon_install(filepath=config["zip"])
bpy.ops.preferences.addon_enable(module="texport_blender")
bpy.context.preferences.addons["texport_blender"].preferences.texport_path = config["texport"]
import texport_blender.operators as operators  # noqa: E402  (importable once enabled)
import texport_blender.settings as settings  # noqa: E402

window = bpy.context.window_manager.windows[0]
area = max(window.screen.areas, key=lambda a: a.width * a.height)
area.type = "NODE_EDITOR"
area.spaces.active.tree_type = "ShaderNodeTree"
region = next(r for r in area.regions if r.type == "WINDOW")


def in_editor():
    return bpy.context.temp_override(window=window, area=area, region=region)


def material_state():
    tree = bpy.data.objects["Cube"].active_material.node_tree
    return [sorted((l.from_node.name, l.to_socket.name) for l in tree.links), sorted(i.name for i in bpy.data.images)]


def leftovers() -> list:
    return sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith("texport-blender-"))


steps = iter(("synthesize", "wait", "gatys", "escape", "after"))
state = {"step": next(steps)}


def tick():
    s = bpy.context.scene.texport
    try:
        step = state["step"]
        if step == "synthesize":
            note(networks=settings.networks(None, None, ""))
            s.source, s.network, s.size, s.seed, s.tileable, s.refine = "NETWORK", "pebbles", "64", 3, True, 2
            with in_editor():
                note(invoke=sorted(bpy.ops.texport.synthesize("INVOKE_DEFAULT")), running=operators.running())
            state.update(step=next(steps), since=time.monotonic())
            return 0.2
        if step == "wait":
            if operators.running():
                note(fraction=max(report.get("fraction", 0.0), operators._running[0]._job.fraction))
                if time.monotonic() - state["since"] > 300:
                    raise TimeoutError("the modal Synthesize did not finish in 300 s")
                return 0.2
            image = bpy.data.images.get("pebbles-seed3")
            note(image=image and [list(image.size), image.packed_file is not None], after_modal=material_state())
            with in_editor():  # the panel, drawn as a popup: a draw error is a traceback on stderr
                note(panel=sorted(bpy.ops.wm.call_panel(name="TEXPORT_PT_panel", keep_open=True)))
            state["step"] = next(steps)
            return 0.5
        if step == "gatys":
            s.source, s.exemplar, s.size, s.iters, s.refine = "GATYS", "pebbles", "64", 100000, 0
            state["before"] = material_state()
            with in_editor():
                note(invoke_gatys=sorted(bpy.ops.texport.synthesize("INVOKE_DEFAULT")))
            state["step"] = next(steps)
            return 4.0
        if step == "escape":
            job = operators._running[0]._job if operators.running() else None
            note(gatys_running=job is not None and not job.done)
            state["process"] = job and job._process
            window.event_simulate(type="ESC", value="PRESS")
            window.event_simulate(type="ESC", value="RELEASE")
            state["step"] = next(steps)
            return 1.0
        if step == "after":
            process = state["process"]
            note(running_after_escape=operators.running(), returncode=process.poll() if process else None,
                 unchanged=material_state() == state["before"], leftovers=leftovers(), done=True)
    except Exception:
        note(exception=traceback.format_exc())
    bpy.ops.wm.quit_blender()
    return None


bpy.app.timers.register(tick, first_interval=1.0)
