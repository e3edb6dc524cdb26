"""Generate a scene that renders external textures as flat, predictable colours.

Usage:
    blender -b --factory-startup --python test/scenes/make_texture_scene.py -- OUT_DIR

Writes OUT_DIR/scene.blend and, beside it, the textures it refers to by relative `//` paths:

    tex/color.png        one colour, on the left third of the frame
    tex/udim.1001.png    UDIM tile 1001, on the middle third   (image `//tex/udim.<UDIM>.png`)
    tex/udim.1002.png    UDIM tile 1002, on the right third

An orthographic camera looks straight down at two planes with emission-only materials, the view
transform is Standard and there are no lights, so each third of the 96x32 frame comes out in the
exact colour of its texture (sRGB in, sRGB out). A texture the render node cannot find renders
magenta (255, 0, 255) instead. The colours are printed as JSON on the last line, for tests.

Cycles on the CPU, 4 samples, denoising off (Debian's Blender 3.4 has no OpenImageDenoise).
"""

import json
import os
import sys

import bpy

COLORS = {
    "tex/color.png": (230, 120, 30),
    "tex/udim.1001.png": (40, 200, 90),
    "tex/udim.1002.png": (60, 90, 220),
}
WIDTH, HEIGHT = 96, 32


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if len(argv) != 1:
        raise SystemExit("usage: blender -b --factory-startup --python make_texture_scene.py -- OUT_DIR")
    return os.path.abspath(argv[0])


def write_png(path, rgb):
    """An 8x8 PNG of one colour. Byte images hold sRGB values, so these are the file's bytes."""
    image = bpy.data.images.new(os.path.basename(path), 8, 8, alpha=False)
    pixels = [rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, 1.0] * 64
    image.pixels.foreach_set(pixels)
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def emission_material(name, image):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    for node in list(nodes):
        nodes.remove(node)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Closest"
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    output = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(tex.outputs["Color"], emission.inputs["Color"])
    mat.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def plane(name, x_min, x_max, material, u_scale=1.0):
    """A plane covering x_min..x_max, y -1..1, with its UVs' U stretched by `u_scale`."""
    bpy.ops.mesh.primitive_plane_add(size=2.0, location=((x_min + x_max) / 2.0, 0.0, 0.0))
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = ((x_max - x_min) / 2.0, 1.0, 1.0)
    uv = obj.data.uv_layers.active.data
    for loop in uv:
        loop.uv = (loop.uv[0] * u_scale, loop.uv[1])
    obj.data.materials.append(material)
    return obj


def configure(scene):
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for layer in scene.view_layers:
        layer.cycles.denoising_store_passes = False
    scene.cycles.seed = 0
    scene.render.resolution_x = WIDTH
    scene.render.resolution_y = HEIGHT
    scene.render.resolution_percentage = 100
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.frame_start = 1
    scene.frame_end = 1
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)


def main():
    out_dir = parse_args()
    bpy.context.preferences.filepaths.save_version = 0  # no scene.blend1 beside the scene
    os.makedirs(os.path.join(out_dir, "tex"), exist_ok=True)
    blend = os.path.join(out_dir, "scene.blend")

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    # Saved first, so that `//` paths mean "beside scene.blend" from here on.
    bpy.ops.wm.save_as_mainfile(filepath=blend, compress=False)
    for rel, rgb in COLORS.items():
        write_png(os.path.join(out_dir, rel), rgb)

    color = bpy.data.images.load("//tex/color.png")
    udim = bpy.data.images.load("//tex/udim.1001.png")
    udim.name = "udim"
    udim.source = "TILED"
    udim.filepath = "//tex/udim.<UDIM>.png"
    udim.tiles.new(tile_number=1002)
    udim.reload()

    scene = bpy.context.scene
    plane("ColorPlane", -3.0, -1.0, emission_material("Color", color))
    # U from 0 to 2: the left half of this plane samples tile 1001, the right half tile 1002.
    plane("UdimPlane", -1.0, 3.0, emission_material("Udim", udim), u_scale=2.0)

    bpy.ops.object.camera_add(location=(0.0, 0.0, 10.0), rotation=(0.0, 0.0, 0.0))
    camera = bpy.context.active_object
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 6.0
    scene.camera = camera
    configure(scene)
    bpy.ops.wm.save_as_mainfile(filepath=blend, compress=False)
    print(json.dumps({"blend": blend, "colors": {k: list(v) for k, v in COLORS.items()}}))


main()
