"""Generate a tiny scene that carries an auto-run Python script.

Usage:
    blender -b --factory-startup --python test/scenes/make_autorun_scene.py -- OUT.blend MARKER_PATH

The text block `autorun_marker.py` is registered as a module (`use_module`), so
Blender executes it when the file loads, but only if auto-execution is allowed.
The script writes MARKER_PATH. A render node must render untrusted uploads with
`--disable-autoexec`; a test renders this file and asserts the marker is absent.
"""

import sys

import bpy


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if len(argv) != 2:
        sys.stderr.write("usage: make_autorun_scene.py -- OUT.blend MARKER_PATH\n")
        sys.exit(2)
    return argv[0], argv[1]


# repr() gives a valid Python string literal for any path, quotes and backslashes included.
MARKER_SCRIPT = """\
# Written by test/scenes/make_autorun_scene.py: proves that this file's code ran.
import os
marker = {marker!r}
os.makedirs(os.path.dirname(marker) or ".", exist_ok=True)
with open(marker, "w") as handle:
    handle.write("autorun script executed\\n")
"""


def build(marker_path):
    scene = bpy.context.scene
    # --factory-startup already provides a cube, a camera and a light: exactly the
    # tiny renderable scene this needs.
    for name in ("Cube", "Camera", "Light"):
        if name not in bpy.data.objects:
            raise RuntimeError("factory startup scene has no %r object" % name)
    scene.camera = bpy.data.objects["Camera"]

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_adaptive_sampling = False
    # Debian's Blender 3.4 has no OpenImageDenoise.
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for layer in scene.view_layers:
        layer.cycles.denoising_store_passes = False
    scene.render.resolution_x = 32
    scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    scene.frame_start = 1
    scene.frame_end = 1
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = "//render/frame_"

    text = bpy.data.texts.new("autorun_marker.py")
    text.write(MARKER_SCRIPT.format(marker=marker_path))
    # "Register": Blender runs module text blocks on load when auto-exec is allowed.
    text.use_module = True


def main():
    out, marker_path = parse_args()
    build(marker_path)
    bpy.ops.wm.save_as_mainfile(filepath=out, compress=False)
    print("make_autorun_scene: wrote %s (marker %s)" % (out, marker_path))


main()
