"""The panel in the Shader Editor's sidebar (N), tab "texport": the source, the options, the buttons."""

from __future__ import annotations

import bpy

from . import material as mat
from . import operators, settings


class TEXPORT_PT_panel(bpy.types.Panel):
    bl_label = "texport"
    bl_idname = "TEXPORT_PT_panel"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "texport"

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "tree_type", "") == "ShaderNodeTree"

    def draw(self, context):
        layout = self.layout
        s = settings.scene(context)
        layout.prop(s, "source", expand=True)
        col = layout.column()
        if s.source == "NETWORK":
            col.prop(s, "network")
        elif s.source == "FILE":
            col.prop(s, "model_file")
        elif s.source == "PROPO":
            col.prop(s, "texture_image")
            if s.texture_image is None:
                col.prop(s, "texture_file")
            col.label(text="Colours right, structure only roughly", icon="INFO")
        else:
            col.prop(s, "exemplar")
            col.prop(s, "iters")
            col.label(text="Gatys takes minutes on a CPU (Esc cancels)", icon="TIME")
        col = layout.column(align=True)
        col.prop(s, "size")
        col.prop(s, "seed")
        col.prop(s, "tileable")
        if s.source != "GATYS":
            col.prop(s, "refine")
            col.prop(s, "backend")
        if operators.running():
            layout.label(text="texport is running (Esc cancels)", icon="SORTTIME")
        row = layout.row(align=True)
        row.operator("texport.synthesize", icon="TEXTURE")
        row.operator("texport.new_sample", icon="FILE_REFRESH")
        texture = mat.base_color_texture(context.active_object.active_material if context.active_object else None)
        if texture is not None and texture.image is not None and mat.RECORD in texture.image:
            layout.label(text=f"Base Color: {texture.image.name}", icon="IMAGE_DATA")


CLASSES = (TEXPORT_PT_panel,)
