"""The two operators: Synthesize (a texture into the active material) and New sample (the next seed of
the texture there, in place).

From the panel they run modally: texport runs in a background thread, a timer polls it, Blender's
progress indicator and the status bar show it, and Esc cancels it (texport is terminated and writes
nothing). Called from a script (bpy.ops.texport.synthesize(), e.g. under `blender -b`) they block
until texport is done. Both ways share start() and finish(); errors are Blender error reports with
texport's one-line message, and the file is only touched after a run has succeeded.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import bpy

from . import material as mat
from . import settings
from .runner import Job, Request, RunError, find_texport

_running: list = []  # the operator whose texport run is in progress (one at a time)


def running() -> bool:
    return bool(_running)


class _TexportRun:
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return not _running and context.active_object is not None

    def request(self, context, folder: str) -> tuple[Request, str | None]:
        """(what to run, the name of an image to replace in place or None); inputs that are Blender
        images are written to `folder`; raises RunError."""
        raise NotImplementedError

    def start(self, context) -> None:
        mat.check_object(context.active_object)
        self._object = context.active_object.name
        texport = find_texport(settings.preferences(context).texport_path)
        folder = tempfile.mkdtemp(prefix="texport-blender-")
        try:
            request, self._replace = self.request(context, folder)
            request.check()
            self._job = Job(request, texport, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def finish(self, context) -> set:
        job = self._job
        try:
            if job.error:
                self.report({"WARNING" if job.cancelled else "ERROR"}, job.error)
                return {"CANCELLED"}
            obj = bpy.data.objects.get(self._object)
            if obj is None:
                raise RunError(f"object {self._object} is gone")
            target = bpy.data.images.get(self._replace) if self._replace else None
            if self._replace and target is None:
                raise RunError(f"image {self._replace} is gone")
            image = mat.pack_png(job.output, job.request, target)
            if target is None:
                material = mat.target_material(obj)
                mat.wire(material, image)
            where = "replaced in place" if target is not None else f"into {material.name}"
            self.report({"INFO"}, f"texport: {image.name} ({image.size[0]}x{image.size[1]}) {where}")
            settings.scene(context).seed = job.request.seed
            return {"FINISHED"}
        except RunError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            job.close()

    def execute(self, context):
        """Blocking: for scripts and background Blender."""
        try:
            self.start(context)
        except RunError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._job.wait()
        return self.finish(context)

    def invoke(self, context, event):
        """Modal: texport in the background, the UI stays live, Esc cancels."""
        try:
            self.start(context)
        except RunError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        self._started = time.monotonic()
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        _running.append(self)
        self._status(context)
        return {"RUNNING_MODAL"}

    def _status(self, context) -> None:
        """The status bar: what runs, for how long, how far (when texport shows a bar), and how to stop it."""
        if context.workspace is not None:
            job = self._job
            done = f", {job.fraction:.0%}" if job.fraction else ""
            context.workspace.status_text_set(
                f"texport: {job.request.name()} {time.monotonic() - self._started:.0f} s{done} (Esc cancels)")

    def _stop(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        if self in _running:
            _running.remove(self)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._job.cancel()
            self._stop(context)
            return self.finish(context)
        if event.type == "TIMER":
            if not self._job.done:
                context.window_manager.progress_update(int(100 * self._job.fraction))
                self._status(context)
                return {"RUNNING_MODAL"}
            self._stop(context)
            return self.finish(context)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the operator (a file is loaded, Blender quits): stop texport too."""
        self._job.cancel()
        self._stop(context)
        self._job.close()


class TEXPORT_OT_synthesize(_TexportRun, bpy.types.Operator):
    """Run texport with the panel's settings and wire the texture into the active material's Base Color"""

    bl_idname = "texport.synthesize"
    bl_label = "Synthesize"

    def request(self, context, folder):
        return settings.request(context, folder), None


class TEXPORT_OT_new_sample(_TexportRun, bpy.types.Operator):
    """Replace the texport texture in the active material's Base Color with the next seed's sample, in place"""

    bl_idname = "texport.new_sample"
    bl_label = "New sample"

    def request(self, context, folder):
        texture = mat.base_color_texture(context.active_object.active_material)
        image = texture.image if texture is not None else None
        if image is None or mat.RECORD not in image:
            raise RunError("no texport texture in this material's Base Color: use Synthesize first")
        request = Request.from_record(image[mat.RECORD].to_dict()).next_sample()
        return settings.with_image_file(request, folder), image.name


CLASSES = (TEXPORT_OT_synthesize, TEXPORT_OT_new_sample)
