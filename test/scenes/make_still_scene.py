"""Generate a tiny still scene for split-still (tile) and preview-video tests.

Usage:
    blender -b --factory-startup --python test/scenes/make_still_scene.py -- OUT.blend \
        [--width W --height H] [--samples N] [--adaptive] [--dither D] \
        [--fps F --fps-base B] [--frames N] [--color-depth 8|16] [--color-mode RGB|RGBA]

The picture has detail everywhere a tile edge can fall: a fine checker floor, a sphere
with a sharp shadow and an emissive bar crossing the frame diagonally, so a tile that was
rendered with the wrong pixel offset, a different noise pattern or a lost row shows up as
changed pixels in a pixel-for-pixel comparison with the whole render.

Cycles on the CPU with a fixed seed and denoising off (Debian's Blender 3.4 has no
OpenImageDenoise). Adaptive sampling is off unless --adaptive: its convergence test looks at
neighbouring pixels, so the tests use the flag to show what it does at tile edges. Dithering
is 0 unless --dither, for the same reason (see worker-node/blender/tile-border.ts).
"""

import argparse
import sys

import bpy


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="make_still_scene.py")
    parser.add_argument("out", help="path of the .blend to write")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--adaptive", action="store_true", help="turn Cycles adaptive sampling on")
    parser.add_argument("--dither", type=float, default=0.0, help="render.dither_intensity")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--fps-base", type=float, default=1.0)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--color-depth", choices=["8", "16"], default="8")
    parser.add_argument("--color-mode", choices=["RGB", "RGBA"], default="RGBA")
    return parser.parse_args(argv)


def clear_scene():
    # --factory-startup still gives the default cube, camera and light; start clean.
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)


def principled(name, rgba, emission=0.0):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Roughness"].default_value = 0.4
    if emission > 0.0:
        bsdf.inputs["Emission"].default_value = rgba
        bsdf.inputs["Emission Strength"].default_value = emission
    return mat


def checker(name, scale):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    tex = nodes.new("ShaderNodeTexChecker")
    tex.inputs["Scale"].default_value = scale
    tex.inputs["Color1"].default_value = (0.9, 0.85, 0.2, 1.0)
    tex.inputs["Color2"].default_value = (0.1, 0.2, 0.7, 1.0)
    mat.node_tree.links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def build(args):
    scene = bpy.context.scene

    bpy.ops.mesh.primitive_plane_add(size=12.0, location=(0.0, 0.0, 0.0))
    bpy.context.active_object.data.materials.append(checker("Checker", 24.0))

    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(0.3, 0.2, 1.0))
    bpy.ops.object.shade_smooth()
    bpy.context.active_object.data.materials.append(principled("Red", (0.8, 0.1, 0.1, 1.0)))

    # A glowing bar across the frame diagonally crosses every tile boundary.
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, 0.3), rotation=(0.0, 0.0, 0.6))
    bar = bpy.context.active_object
    bar.scale = (7.0, 0.12, 0.12)
    bar.data.materials.append(principled("Glow", (0.2, 0.9, 0.4, 1.0), 3.0))

    bpy.ops.object.camera_add(location=(0.0, -6.0, 4.0), rotation=(0.98, 0.0, 0.0))
    scene.camera = bpy.context.active_object

    bpy.ops.object.light_add(type="SUN", location=(2.0, -2.0, 6.0), rotation=(0.5, 0.3, 0.4))
    bpy.context.active_object.data.energy = 3.0

    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.05, 0.08, 1.0)
    return scene


def configure_render(scene, args):
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_adaptive_sampling = args.adaptive
    scene.cycles.seed = 0
    scene.cycles.use_animated_seed = False
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    scene.cycles.max_bounces = 3
    for layer in scene.view_layers:
        layer.cycles.denoising_store_passes = False

    scene.render.resolution_x = args.width
    scene.render.resolution_y = args.height
    scene.render.resolution_percentage = 100
    scene.render.use_border = False
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    scene.render.dither_intensity = args.dither
    scene.render.fps = args.fps
    scene.render.fps_base = args.fps_base
    scene.frame_start = 1
    scene.frame_end = args.frames
    scene.frame_current = 1

    image = scene.render.image_settings
    image.file_format = "PNG"
    image.color_mode = args.color_mode
    image.color_depth = args.color_depth
    scene.render.film_transparent = False
    scene.render.filepath = "//render/still_"


def main():
    args = parse_args()
    clear_scene()
    scene = build(args)
    configure_render(scene, args)
    bpy.ops.wm.save_as_mainfile(filepath=args.out, compress=False)
    print("make_still_scene: wrote %s (%dx%d, %d samples)" % (args.out, args.width, args.height, args.samples))


main()
