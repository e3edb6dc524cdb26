"""The add-on's preferences (where the master is, the token) and the scene's submission settings."""

import os

import bpy

# The module's name: `render_farm`, or `bl_ext.<repository>.render_farm` as an extension.
ADDON = __package__
DEFAULT_MASTER = "http://localhost:8000"
DEVICES = ("any", "cpu", "gpu", "cuda", "optix", "hip", "oneapi", "metal")
# FRAME_ORDERS (protocol/schemas.ts), with what each means.
ORDERS = (
    ("sequential", "Sequential", "Frames in order"),
    ("progressive", "Progressive", "First, last and middle frame, then halves: the whole shot in rough form first"),
)


class RenderFarmPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    master_url: bpy.props.StringProperty(
        name="Master URL",
        description="The farm's master; FARM_MASTER_URL in the environment is used while this is the default",
        default=DEFAULT_MASTER,
    )
    token: bpy.props.StringProperty(
        name="Token",
        description="A submitter token (FARM_SUBMIT_TOKEN on the master); FARM_TOKEN in the environment is used while this is empty",
        subtype="PASSWORD",
    )

    def draw(self, _context):
        self.layout.prop(self, "master_url")
        self.layout.prop(self, "token")


def connection():
    """(master URL, token): the preferences, with FARM_MASTER_URL / FARM_TOKEN filling them when empty."""
    prefs = bpy.context.preferences.addons[ADDON].preferences
    url = prefs.master_url.strip()
    if not url or url == DEFAULT_MASTER:
        url = os.environ.get("FARM_MASTER_URL", "").strip() or url or DEFAULT_MASTER
    token = prefs.token.strip() or os.environ.get("FARM_TOKEN", "").strip()
    return url.rstrip("/"), token


class RenderFarmSettings(bpy.types.PropertyGroup):
    frames: bpy.props.StringProperty(
        name="Frames",
        description="Frames to render, like 1-250, 1-100x5 or 1,5,10-20; empty: the scene's range and step",
    )
    name: bpy.props.StringProperty(name="Job name", description="Empty: the file's name")
    priority: bpy.props.IntProperty(name="Priority", description="Higher runs first", default=50, min=0, max=100)
    chunk_size: bpy.props.IntProperty(name="Chunk size", description="Frames per task; 0: sized by the master", default=0, min=0, max=10_000)
    device: bpy.props.EnumProperty(
        name="Device",
        description="What the job renders on",
        items=[(d, d.upper() if d not in ("any", "gpu") else d.capitalize(), "") for d in DEVICES],
        default="any",
    )
    tags: bpy.props.StringProperty(name="Tags", description="Only nodes carrying all these tags render it, like gpu-24g,studio-a")
    order: bpy.props.EnumProperty(name="Order", description="The order nodes render the frames in", items=ORDERS, default="sequential")
    preview_video: bpy.props.BoolProperty(name="Preview video", description="Make an H.264 preview of an animation", default=True)
    last_job_id: bpy.props.StringProperty(name="Last job", description="The job the last submission made")


CLASSES = (RenderFarmPreferences, RenderFarmSettings)
