"""The render node's hot Blender: one Blender process renders many frames of one .blend.

Started by worker-node/blender/hot-blender.ts as

    blender -b --factory-startup --disable-autoexec -noaudio FILE [-t N] \
        --python hot_render.py -- --events-fd 3

Blender loads FILE once; this script then reads one JSON command per line on stdin and
answers with JSON events, one per line, on the events file descriptor (fd 3, a pipe of its
own, because Blender's C code writes its own progress to stdout with its own buffering and a
shared stream could splice an event into the middle of one of its lines). With no events fd
the events go to stdout, each on a line starting with EVENT_PREFIX.

Commands:
    {"cmd": "render", "id": "any", "frames": [3, 4, 5], "output": "/abs/dir/frame_######"}
    {"cmd": "quit"}                 (end of stdin does the same)

Events:
    {"event": "ready", "blender": "3.4.1", "file": ..., "frame_start": 1, "frame_end": 24,
     "sequential": true, "unbaked": ["Emitter/ParticleSystem"], "rss_mb": ...}
    {"event": "frame_started", "id": ..., "frame": 7}
    {"event": "frame_saved", "id": ..., "frame": 7, "path": ".../frame_000007.png",
     "render_seconds": 0.81, "step_seconds": 0.02, "rss_mb": 310.5, "peak_rss_mb": 402.0}
    {"event": "done", "id": ..., "frames": 3}
    {"event": "error", "id": ..., "frame": 7, "message": "...", "traceback": "..."}

Frames are written exactly as `blender -b FILE -o OUTPUT -x 1 -f N` writes them: the output
pattern is expanded by scene.render.frame_path() (its # run becomes the zero-padded frame
number, and the extension is always added) and set as the still's scene.render.filepath, so the
node finds frame_000007.png either way.

Why frames are stepped in order: a simulation whose cache is not baked (particles, cloth, soft
body, rigid body, dynamic paint, fluid) is only correct when Blender steps through every frame
from the start, as `blender -a` does. Jumping to a frame (`-f 7`, or the first frame of a chunk
`-s 5 -e 8 -a`) makes Blender 3.4 integrate the whole gap in one step, so the result depends on
how the frames were split between processes. When the scene has such a cache, this script
evaluates every frame from the scene start up to the one asked for (without rendering the ones
in between) and keeps that state between commands, so a frame rendered here equals the same
frame of one `blender -b FILE -a` run however the farm chunked the range. When every cache is
baked, or there is none, frames are independent and it jumps straight to the frame; then the
result also equals a fresh `blender -b FILE -f N`.
"""

import argparse
import json
import os
import sys
import time
import traceback

import bpy

EVENT_PREFIX = "@@farm-event "


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="hot_render.py")
    parser.add_argument("--events-fd", type=int, default=None)
    return parser.parse_args(argv)


class Events:
    """Writes one JSON object per line, flushed at once so the node sees it immediately."""

    def __init__(self, fd):
        self.fd = fd

    def send(self, **event):
        line = json.dumps(event, separators=(",", ":")) + "\n"
        if self.fd is None:
            sys.stdout.write(EVENT_PREFIX + line)
            sys.stdout.flush()
            return
        data = line.encode("utf-8")
        while data:
            written = os.write(self.fd, data)
            data = data[written:]


def memory_mb():
    """(current RSS, peak RSS) of this process in MB, from /proc (Linux); (None, None) elsewhere."""
    try:
        with open("/proc/self/status", "r") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return (int(fields["VmRSS"].split()[0]) / 1024.0, int(fields["VmHWM"].split()[0]) / 1024.0)
    except (OSError, KeyError, ValueError):
        return (None, None)


def unbaked_caches(scene):
    """Names of the simulations whose results depend on stepping through earlier frames."""
    found = []
    world = scene.rigidbody_world
    if world is not None and world.enabled and world.point_cache is not None and not world.point_cache.is_baked:
        found.append("RigidBodyWorld")
    for obj in scene.objects:
        for psys in obj.particle_systems:
            # Hair is not simulated over time unless its dynamics are on.
            if psys.settings.type == "HAIR" and not psys.use_hair_dynamics:
                continue
            if not psys.point_cache.is_baked:
                found.append("%s/%s" % (obj.name, psys.name))
        for mod in obj.modifiers:
            if not mod.show_render:
                continue
            cache = None
            if mod.type in ("CLOTH", "SOFT_BODY"):
                cache = mod.point_cache
            elif mod.type == "DYNAMIC_PAINT" and mod.canvas_settings is not None:
                # Dynamic paint surfaces each have a cache; any unbaked one counts.
                for surface in mod.canvas_settings.canvas_surfaces:
                    if surface.point_cache is not None and not surface.point_cache.is_baked:
                        found.append("%s/%s/%s" % (obj.name, mod.name, surface.name))
            elif mod.type == "FLUID" and mod.fluid_type == "DOMAIN":
                # Fluid domains bake into their own cache directory; "replay" means simulate live.
                if mod.domain_settings.cache_type == "REPLAY":
                    found.append("%s/%s" % (obj.name, mod.name))
            if cache is not None and not cache.is_baked:
                found.append("%s/%s" % (obj.name, mod.name))
    return found


class HotRenderer:
    def __init__(self, events):
        self.events = events
        self.scene = bpy.context.scene
        self.unbaked = unbaked_caches(self.scene)
        self.sequential = len(self.unbaked) > 0
        # The frame the scene was last stepped to in order, or None when its state did not come
        # from stepping (freshly loaded, or jumped to a frame before the start).
        self.stepped_to = None
        render = self.scene.render
        # Settings a farm must not inherit from the file (see OVERWRITE_OUTPUT_EXPR in
        # render-args.ts): always overwrite, never write placeholders, always add the extension.
        render.use_overwrite = True
        render.use_placeholder = False
        render.use_file_extension = True

    def go_to(self, frame):
        """Makes `frame` the scene's current frame the way a sequential render would reach it."""
        scene = self.scene
        origin = scene.frame_start
        if not self.sequential or frame < origin:
            scene.frame_set(frame)
            self.stepped_to = None
            return
        if self.stepped_to is not None and frame == self.stepped_to:
            scene.frame_set(frame)
            return
        if self.stepped_to is None or frame < self.stepped_to:
            scene.frame_set(origin)
            self.stepped_to = origin
        for f in range(self.stepped_to + 1, frame + 1):
            scene.frame_set(f)
        self.stepped_to = frame

    def render(self, command):
        command_id = command.get("id")
        frames = command.get("frames")
        output = command.get("output")
        if not isinstance(frames, list) or not all(isinstance(f, int) for f in frames) or not frames:
            raise ValueError("render needs a non-empty list of whole frames")
        if not isinstance(output, str) or not os.path.isabs(output):
            raise ValueError("render needs an absolute output pattern")
        scene = self.scene
        for frame in frames:
            self.events.send(event="frame_started", id=command_id, frame=frame)
            try:
                started = time.monotonic()
                self.go_to(frame)
                stepped = time.monotonic()
                # A still render does not replace # with the frame number, so the pattern is
                # expanded here by Blender's own function, which -o and -a use too, and the
                # result (with its extension) becomes the still's file path.
                scene.render.filepath = output
                path = scene.render.frame_path(frame=frame)
                scene.render.filepath = path
                result = bpy.ops.render.render(write_still=True)
                finished = time.monotonic()
                if result != {"FINISHED"}:
                    raise RuntimeError("bpy.ops.render.render returned %s" % sorted(result))
                if not os.path.isfile(path):
                    raise RuntimeError("Blender did not write %s" % path)
            except Exception as err:  # noqa: BLE001 - every failure is reported, then the node decides
                self.events.send(
                    event="error",
                    id=command_id,
                    frame=frame,
                    message=str(err).strip() or type(err).__name__,
                    traceback=traceback.format_exc(),
                )
                return
            rss, peak = memory_mb()
            self.events.send(
                event="frame_saved",
                id=command_id,
                frame=frame,
                path=path,
                render_seconds=round(finished - stepped, 4),
                step_seconds=round(stepped - started, 4),
                rss_mb=rss,
                peak_rss_mb=peak,
            )
        self.events.send(event="done", id=command_id, frames=len(frames))


def main():
    args = parse_args()
    events = Events(args.events_fd)
    renderer = HotRenderer(events)
    rss, peak = memory_mb()
    events.send(
        event="ready",
        blender=bpy.app.version_string,
        file=bpy.data.filepath,
        frame_start=renderer.scene.frame_start,
        frame_end=renderer.scene.frame_end,
        sequential=renderer.sequential,
        unbaked=renderer.unbaked,
        rss_mb=rss,
        peak_rss_mb=peak,
        pid=os.getpid(),
    )
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
        except ValueError as err:
            events.send(event="error", id=None, frame=None, message="bad command: %s" % err, traceback="")
            continue
        cmd = command.get("cmd") if isinstance(command, dict) else None
        if cmd == "quit":
            break
        if cmd == "render":
            try:
                renderer.render(command)
            except ValueError as err:
                events.send(event="error", id=command.get("id"), frame=None, message=str(err), traceback="")
        else:
            events.send(event="error", id=command.get("id") if isinstance(command, dict) else None,
                        frame=None, message="unknown command %r" % (cmd,), traceback="")


try:
    main()
except BrokenPipeError:
    # The node went away: nobody is left to render for.
    pass
sys.stdout.flush()
