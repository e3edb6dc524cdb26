"""Generate a tiny animated test scene with a particle simulation.

Usage:
    blender -b --factory-startup --python test/scenes/make_anim_scene.py -- OUT.blend \
        [--frames N] [--width W --height H] [--no-bake] [--integrator EULER]

The scene is built to exercise what makes farm rendering hard: a particle
simulation (whose state at frame N depends on frames 1..N-1), a keyframed object
and a keyframed camera, so every frame differs from its neighbours. It is kept
tiny (96x64, 16 samples) so each frame renders in a fraction of a second on two
cores.

The particle cache is baked into the file by default, so any frame renders the same
whether Blender renders it alone (-f 7), in a chunk (-s 5 -e 8 -a) or in one run from
frame 1; see bake_particles() for what happens without the bake.

Debian's Blender 3.4 is built without OpenImageDenoise, so denoising is turned
off everywhere; leaving it on makes the render fail or fall back differently
between builds.
"""

import argparse
import sys

import bpy


def parse_args():
    # Blender passes everything after "--" through to the script untouched.
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="make_anim_scene.py")
    parser.add_argument("out", help="path of the .blend to write")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument(
        "--no-bake",
        action="store_true",
        help="leave the particle cache unbaked, so Blender simulates while rendering",
    )
    parser.add_argument(
        "--integrator",
        choices=["EULER", "VERLET", "MIDPOINT", "RK4"],
        default="MIDPOINT",
        help="particle integrator; EULER makes an unbaked sim visibly order-dependent",
    )
    return parser.parse_args(argv)


def clear_scene():
    # --factory-startup still gives the default cube, camera and light; start clean
    # so the scene content is exactly what this script says.
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)
    for mat in list(bpy.data.materials):
        bpy.data.materials.remove(mat)


def make_material(name, rgba, emission=0.0):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Roughness"].default_value = 0.6
    if emission > 0.0:
        bsdf.inputs["Emission"].default_value = rgba
        bsdf.inputs["Emission Strength"].default_value = emission
    return mat


def key_location(obj, frame, location):
    obj.location = location
    obj.keyframe_insert(data_path="location", frame=frame)


def build(args):
    scene = bpy.context.scene
    frames = args.frames

    # Ground plane, coloured so that an all-black or all-grey frame is obviously wrong.
    bpy.ops.mesh.primitive_plane_add(size=20.0, location=(0.0, 0.0, 0.0))
    ground = bpy.context.active_object
    ground.name = "Ground"
    ground.data.materials.append(make_material("GroundMat", (0.15, 0.45, 0.2, 1.0)))

    # The particle instance: a small low-poly sphere parked below the ground so the
    # original itself never shows up in the camera.
    bpy.ops.mesh.primitive_uv_sphere_add(
        radius=1.0, segments=8, ring_count=6, location=(0.0, 0.0, -50.0)
    )
    droplet = bpy.context.active_object
    droplet.name = "Droplet"
    droplet.data.materials.append(make_material("DropletMat", (0.9, 0.5, 0.1, 1.0), 2.0))

    # The emitter: particles are born over the whole animation and fall under gravity,
    # so the state at frame N depends on every earlier frame.
    bpy.ops.mesh.primitive_plane_add(size=2.0, location=(0.0, 0.0, 3.0))
    emitter = bpy.context.active_object
    emitter.name = "Emitter"
    # The emitter plane itself stays out of the render so it cannot hide the particles.
    emitter.show_instancer_for_render = False
    emitter.modifiers.new("Particles", type="PARTICLE_SYSTEM")
    psys = emitter.particle_systems[0]
    psys.seed = 7
    settings = psys.settings
    settings.integrator = args.integrator
    settings.count = 300
    settings.frame_start = 1
    settings.frame_end = max(frames, 2)
    settings.lifetime = frames * 2
    settings.emit_from = "FACE"
    settings.normal_factor = 2.0
    settings.factor_random = 1.0
    settings.render_type = "OBJECT"
    settings.instance_object = droplet
    settings.particle_size = 0.06
    settings.size_random = 0.5
    settings.use_rotations = False
    settings.effector_weights.gravity = 1.0
    scene.use_gravity = True
    # The cache covers the scene range, so a bake stores every frame that can be rendered.
    psys.point_cache.frame_start = 1
    psys.point_cache.frame_end = max(frames, 2)

    # A keyframed cube that crosses the frame, so frames differ even where particles
    # are sparse.
    bpy.ops.mesh.primitive_cube_add(size=0.8, location=(-2.5, -1.5, 0.4))
    mover = bpy.context.active_object
    mover.name = "Mover"
    mover.data.materials.append(make_material("MoverMat", (0.2, 0.3, 0.9, 1.0)))
    key_location(mover, 1, (-2.5, -1.5, 0.4))
    key_location(mover, frames, (2.5, 1.0, 0.4))
    mover.rotation_euler = (0.0, 0.0, 0.0)
    mover.keyframe_insert(data_path="rotation_euler", frame=1)
    mover.rotation_euler = (0.0, 0.0, 3.14159)
    mover.keyframe_insert(data_path="rotation_euler", frame=frames)

    # The camera dollies sideways while aiming at a fixed point just above the ground,
    # so the background shifts from frame to frame as well.
    bpy.ops.object.empty_add(location=(0.0, 0.0, 2.0))
    aim = bpy.context.active_object
    aim.name = "CameraAim"
    bpy.ops.object.camera_add(location=(-2.0, -10.0, 5.0))
    camera = bpy.context.active_object
    camera.name = "Camera"
    key_location(camera, 1, (-2.0, -10.0, 5.0))
    key_location(camera, frames, (2.0, -9.0, 6.0))
    track = camera.constraints.new(type="TRACK_TO")
    track.target = aim
    track.track_axis = "TRACK_NEGATIVE_Z"
    track.up_axis = "UP_Y"
    scene.camera = camera

    bpy.ops.object.light_add(type="SUN", location=(3.0, -3.0, 8.0))
    sun = bpy.context.active_object
    sun.name = "Sun"
    sun.data.energy = 3.0
    sun.rotation_euler = (0.6, 0.2, 0.3)

    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.05, 0.08, 1.0)

    return scene


def configure_render(scene, args):
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_adaptive_sampling = False
    # A fixed, non-animated seed keeps a frame's noise identical however it is rendered.
    scene.cycles.seed = 0
    scene.cycles.use_animated_seed = False
    # No OpenImageDenoise in Debian's build: denoising must stay off.
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    scene.cycles.max_bounces = 2
    for layer in scene.view_layers:
        layer.cycles.denoising_store_passes = False

    scene.render.resolution_x = args.width
    scene.render.resolution_y = args.height
    scene.render.resolution_percentage = 100
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    scene.render.fps = 24
    scene.render.fps_base = 1.0
    scene.frame_start = 1
    scene.frame_end = args.frames
    scene.frame_current = 1

    image = scene.render.image_settings
    image.file_format = "PNG"
    image.color_mode = "RGBA"
    image.color_depth = "8"
    scene.render.film_transparent = False
    scene.render.filepath = "//render/frame_"


def bake_particles(scene):
    """Bake the particle cache into memory; memory caches are saved inside the .blend.

    Why: with an unbaked cache, Blender 3.4 does not re-simulate frame by frame when
    it jumps to a frame (`-f 7`, or the first frame of `-s 5 -e 8 -a`); it integrates
    the whole gap in one step. With the default midpoint integrator and plain gravity
    that is only off by float rounding (a few 1/255 pixel steps), but with Euler it
    visibly moves the particles. A baked cache makes every frame the same however the
    farm splits the range between nodes, which is what a farm needs.
    """
    scene.frame_set(scene.frame_start)
    result = bpy.ops.ptcache.bake_all(bake=True)
    if result != {"FINISHED"}:
        raise RuntimeError("baking the particle cache failed: %s" % result)


def main():
    args = parse_args()
    clear_scene()
    scene = build(args)
    configure_render(scene, args)
    if not args.no_bake:
        bake_particles(scene)
    bpy.ops.wm.save_as_mainfile(filepath=args.out, compress=False)
    print(
        "make_anim_scene: wrote %s (%d frames, %dx%d, particles %s)"
        % (args.out, args.frames, args.width, args.height, "live" if args.no_bake else "baked")
    )


main()
