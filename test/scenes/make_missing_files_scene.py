"""Generate a tiny scene whose external files are missing: an image texture and a linked library.

Usage:
    blender -b --factory-startup --python test/scenes/make_missing_files_scene.py -- OUT.blend \
        [--frames N] [--width W --height H] [--no-library]

The plane's material samples `//textures/missing_texture.png`, which is never written, and a
cube is linked from `//missing_library.blend`, which is written, linked and then deleted. Blender
3.4 renders such a file without complaint (exit 0): the texture comes out magenta and the linked
cube is simply absent. A farm has to say so, which is what this scene is for.

Debian's Blender 3.4 is built without OpenImageDenoise, so denoising is turned off.
"""

import argparse
import os
import sys

import bpy


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="make_missing_files_scene.py")
    parser.add_argument("out", help="path of the .blend to write")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--height", type=int, default=24)
    parser.add_argument("--no-library", action="store_true", help="only the missing texture")
    return parser.parse_args(argv)


def clear_scene():
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)


def write_library(path):
    """Saves a .blend holding one cube, for the main scene to link and then lose."""
    clear_scene()
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(1.5, 0.0, 0.5))
    bpy.context.active_object.name = "LibCube"
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def build(args, out_dir):
    bpy.ops.wm.read_factory_settings(use_empty=False)
    clear_scene()
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=4.0)
    plane = bpy.context.active_object
    mat = bpy.data.materials.new("MissingTexture")
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    image_node = nodes.new("ShaderNodeTexImage")
    # A relative path to a file that does not exist: Blender keeps the path and renders magenta.
    image = bpy.data.images.new("missing_texture.png", 8, 8)
    image.source = "FILE"
    image.filepath = "//textures/missing_texture.png"
    image_node.image = image
    mat.node_tree.links.new(image_node.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    plane.data.materials.append(mat)

    if not args.no_library:
        library = os.path.join(out_dir, "missing_library.blend")
        # Relative, so the path means the same on every node: next to the .blend.
        with bpy.data.libraries.load(library, link=True, relative=True) as (src, dst):
            dst.objects = ["LibCube"]
        for obj in dst.objects:
            scene.collection.objects.link(obj)

    bpy.ops.object.camera_add(location=(0.0, -6.0, 4.0), rotation=(0.9, 0.0, 0.0))
    scene.camera = bpy.context.active_object
    bpy.ops.object.light_add(type="SUN", location=(0.0, 0.0, 5.0))

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    scene.render.resolution_x = args.width
    scene.render.resolution_y = args.height
    scene.render.resolution_percentage = 100
    scene.frame_start = 1
    scene.frame_end = args.frames
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = "//render/frame_"


def main():
    args = parse_args()
    out = os.path.abspath(args.out)
    out_dir = os.path.dirname(out)
    library = os.path.join(out_dir, "missing_library.blend")
    if not args.no_library:
        write_library(library)
    build(args, out_dir)
    bpy.ops.wm.save_as_mainfile(filepath=out, compress=False, relative_remap=True)
    if not args.no_library:
        os.remove(library)
    print("make_missing_files_scene: wrote %s (texture%s missing)" % (out, "" if args.no_library else " and library"))


main()
