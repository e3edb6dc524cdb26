"""Generate a shot that links its assets from libraries outside its own folder.

Usage:
    blender -b --factory-startup --python test/scenes/make_linked_scene.py -- OUT_DIR

Writes:

    OUT_DIR/assets/nested/deep.blend   object "Marker", flat yellow emission
    OUT_DIR/assets/tex/wood.png        one colour
    OUT_DIR/assets/lib.blend           collection "Asset": object "Crate" textured with
                                       `//tex/wood.png` (relative to lib.blend), plus "Marker"
                                       linked from `//nested/deep.blend`
    OUT_DIR/shots/main.blend           links collection "Asset" from `//../assets/lib.blend`

So rendering main.blend needs a library one folder up, that library's own texture (relative to
the library, not to main.blend), and a library linked by the library. An orthographic camera
looks straight down: the left half of the 64x32 frame is the crate (the texture's colour), the
right half the marker (yellow). A missing library leaves the black background; a missing texture
renders magenta. The colours are printed as JSON on the last line.
"""

import json
import os
import sys

import bpy

WOOD = (200, 60, 120)
MARKER = (250, 220, 40)
WIDTH, HEIGHT = 64, 32


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if len(argv) != 1:
        raise SystemExit("usage: blender -b --factory-startup --python make_linked_scene.py -- OUT_DIR")
    return os.path.abspath(argv[0])


def empty_file(path):
    """A fresh, empty file saved at `path`, so that `//` paths are relative to it from now on."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def emission(name, color_socket_source=None, rgb=None):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    for node in list(nodes):
        nodes.remove(node)
    em = nodes.new("ShaderNodeEmission")
    out = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(em.outputs["Emission"], out.inputs["Surface"])
    if color_socket_source is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = color_socket_source
        tex.interpolation = "Closest"
        mat.node_tree.links.new(tex.outputs["Color"], em.inputs["Color"])
    else:
        # Emission colours are linear; convert the sRGB bytes so the render shows them back.
        def lin(c):
            c /= 255.0
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        em.inputs["Color"].default_value = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]), 1.0)
    return mat


def square(name, x, material, collection):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new()
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = (x, 0.0, 0.0)
    collection.objects.link(obj)
    return obj


def write_png(path, rgb):
    image = bpy.data.images.new(os.path.basename(path), 8, 8, alpha=False)
    image.pixels.foreach_set([rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, 1.0] * 64)
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def write_deep(path):
    empty_file(path)
    coll = bpy.data.collections.new("MarkerSet")
    bpy.context.scene.collection.children.link(coll)
    square("Marker", 1.0, emission("MarkerMat", rgb=MARKER), coll)
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def write_lib(path, deep_path):
    empty_file(path)
    os.makedirs(os.path.join(os.path.dirname(path), "tex"), exist_ok=True)
    write_png(os.path.join(os.path.dirname(path), "tex", "wood.png"), WOOD)
    wood = bpy.data.images.load("//tex/wood.png")
    asset = bpy.data.collections.new("Asset")
    bpy.context.scene.collection.children.link(asset)
    square("Crate", -1.0, emission("CrateMat", color_socket_source=wood), asset)
    with bpy.data.libraries.load(deep_path, link=True, relative=True) as (src, dst):
        dst.objects = ["Marker"]
    asset.objects.link(dst.objects[0])
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False, relative_remap=True)


def write_main(path, lib_path):
    empty_file(path)
    scene = bpy.context.scene
    with bpy.data.libraries.load(lib_path, link=True, relative=True) as (src, dst):
        dst.collections = ["Asset"]
    instance = bpy.data.objects.new("AssetInstance", None)
    instance.instance_type = "COLLECTION"
    instance.instance_collection = dst.collections[0]
    scene.collection.objects.link(instance)

    cam_data = bpy.data.cameras.new("Camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 4.0
    camera = bpy.data.objects.new("Camera", cam_data)
    camera.location = (0.0, 0.0, 10.0)
    scene.collection.objects.link(camera)
    scene.camera = camera

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for layer in scene.view_layers:
        layer.cycles.denoising_store_passes = False
    scene.render.resolution_x = WIDTH
    scene.render.resolution_y = HEIGHT
    scene.render.resolution_percentage = 100
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.frame_start = 1
    scene.frame_end = 1
    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
    scene.world = world
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False, relative_remap=True)


def main():
    out_dir = parse_args()
    deep = os.path.join(out_dir, "assets", "nested", "deep.blend")
    lib = os.path.join(out_dir, "assets", "lib.blend")
    main_blend = os.path.join(out_dir, "shots", "main.blend")
    write_deep(deep)
    write_lib(lib, deep)
    write_main(main_blend, lib)
    print(json.dumps({"blend": main_blend, "colors": {"wood": list(WOOD), "marker": list(MARKER)}}))


main()
