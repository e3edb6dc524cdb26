"""The Render Farm panel in Output Properties: settings, Check, Submit, then the job's progress."""

import bpy

from .operators import STATE

# How many file names the panel lists per group before it says "and N more".
LISTED = 8


def file_list(layout, title, names, icon):
    if not names:
        return
    box = layout.box()
    box.label(text="%s (%d)" % (title, len(names)), icon=icon)
    for name in names[:LISTED]:
        box.label(text=name)
    if len(names) > LISTED:
        box.label(text="and %d more" % (len(names) - LISTED))


class RENDER_FARM_PT_panel(bpy.types.Panel):
    bl_label = "Render Farm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context):
        layout = self.layout
        rf = context.scene.render_farm
        col = layout.column()
        col.prop(rf, "frames")
        col.prop(rf, "name")
        col.prop(rf, "priority")
        col.prop(rf, "chunk_size")
        col.prop(rf, "order")
        col.prop(rf, "device")
        col.prop(rf, "tags")
        col.prop(rf, "preview_video")

        row = layout.row(align=True)
        row.operator("render_farm.check", icon="VIEWZOOM")
        busy = STATE["busy"]
        sub = row.row(align=True)
        sub.enabled = busy is None
        sub.operator("render_farm.submit", icon="EXPORT")
        if busy is not None:
            layout.label(text="%s (%d%%)" % (busy.status, round(busy.fraction * 100)), icon="TIME")
        elif STATE["note"] is not None:
            icon, text = STATE["note"]
            layout.label(text=text, icon=icon)

        checked = STATE["check"]
        if checked is not None:
            file_list(layout, "Will travel", checked["travel"], "CHECKMARK")
            file_list(layout, "Missing", checked["missing"], "ERROR")
            file_list(layout, "Outside the project, left out", checked["outside"], "CANCEL")

        if rf.last_job_id:
            box = layout.box()
            box.label(text="Job %s" % rf.last_job_id[:8], icon="RENDER_ANIMATION")
            job = STATE["jobs"].get(rf.last_job_id)
            if job:
                total = max(1, job["total_frames"])
                box.label(text="%s: %d of %d frames, %d failed" % (job["status"], job["completed_frames"], job["total_frames"], job["failed_frames"]))
                if hasattr(box, "progress"):  # Blender 4.0+
                    box.progress(factor=job["completed_frames"] / total, text="%d%%" % round(100 * job["completed_frames"] / total))
            row = box.row(align=True)
            row.operator("render_farm.refresh", icon="FILE_REFRESH")
            row.operator("render_farm.open_dashboard", icon="URL")
            row.operator("render_farm.download_frames", icon="IMPORT")


CLASSES = (RENDER_FARM_PT_panel,)
