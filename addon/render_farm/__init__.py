"""Render Farm: submit the open .blend to the farm's master from Output Properties.

Served by the master at `GET /addon.zip`; installs as the module `render_farm` (Blender 3.4 with
`bl_info`, Blender 4.2+ as an extension with blender_manifest.toml). See docs/cli.md, "Submitting
from Blender".
"""

import bpy

from . import operators, panel, settings

bl_info = {
    "name": "Render Farm",
    "author": "blender-edge-farm",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Output > Render Farm",
    "description": "Submit the open .blend with its textures, libraries and caches to the render farm",
    "category": "Render",
}

CLASSES = (*settings.CLASSES, *operators.CLASSES, *panel.CLASSES)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.render_farm = bpy.props.PointerProperty(type=settings.RenderFarmSettings)
    bpy.app.handlers.load_post.append(operators.file_loaded)


def unregister():
    operators.stop()
    if operators.file_loaded in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(operators.file_loaded)
    del bpy.types.Scene.render_farm
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
