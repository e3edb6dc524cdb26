"""The render node's hot Blender: one Blender process renders many frames of one .blend.

Started by worker-node/blender/hot-blender.ts, with the safe arguments of launch.ts, as

    blender SAFE_ARGS FILE [-t N] --python hot_render.py -- --events-fd 3

Blender loads FILE once; this script then reads one JSON command per line on stdin and
answers with JSON events, one per line, on the events file descriptor (fd 3, a pipe of its
own, because Blender's C code writes its own progress to stdout with its own buffering and a
shared stream could splice an event into the middle of one of its lines).

Commands:
    {"cmd": "render", "id": "any", "frames": [3, 4, 5], "output": "/abs/dir/frame_######",
     "preview": {"width": 320, "quality": 80, "skip_png_up_to": 640}}
        (preview optional: null or absent = none; skip_png_up_to optional, 0 = none skipped)
    {"cmd": "quit"}                 (end of stdin does the same)

Events:
    {"event": "ready", "blender": "3.4.1", "file": ..., "frame_start": 1, "frame_end": 24,
     "sequential": true, "unbaked": ["Emitter/ParticleSystem"], "rss_mb": ...}
    {"event": "frame_started", "id": ..., "frame": 7}
    {"event": "frame_saved", "id": ..., "frame": 7, "path": ".../frame_000007.png",
     "render_seconds": 0.81, "step_seconds": 0.02, "rss_mb": 310.5, "peak_rss_mb": 402.0,
     "preview_path": ".../frame_000007.preview.jpg", "preview_seconds": 0.01}
        (preview_path only when a preview was asked for and written; "preview_error" instead
        when it failed: the frame itself is saved either way. No preview is written of PNG
        frames at most skip_png_up_to pixels wide: the dashboard shows those as they are)
    {"event": "done", "id": ..., "frames": 3}
    {"event": "error", "id": ..., "frame": 7, "message": "...", "traceback": "..."}

Each run of consecutive frames is rendered by Blender's own animation render
(bpy.ops.render.render(animation=True) on that range, the code of `-s A -e B -a`): the render
keeps its depsgraph from one frame to the next, as `-a` does, instead of building and evaluating
the whole scene again for each frame as a still render would. Frames are written where
`-o OUTPUT -x 1` writes them (the # run becomes the zero-padded frame number, the extension is
always added), so the node finds frame_000007.png either way; the render_pre and render_write
handlers report each frame as it starts and once its file is written.

Why frames are stepped in order: a simulation whose cache is not baked (particles, cloth, soft
body, rigid body, dynamic paint, fluid) is only correct when Blender steps through every frame
from the start, as `blender -a` does. Jumping to a frame (`-f 7`, or the first frame of a chunk
`-s 5 -e 8 -a`) makes Blender 3.4 integrate the whole gap in one step, so the result depends on
how the frames were split between processes. When the scene has such a cache, this script
evaluates every frame from the scene start up to the one asked for (without rendering the ones
in between) and keeps that state between commands, so a frame rendered here equals the same
frame of one `blender -b FILE -a` run however the farm chunked the range (the animation render
then continues from that state frame by frame). When every cache is baked, or there is none,
frames are independent and a run starts at its first frame directly; then the result also equals
a fresh `blender -b FILE -f N`.

Previews: with "preview" in the command, each saved frame is also written as a small JPEG for the
dashboard before the frame is reported, here in Blender (a few milliseconds for a small frame)
rather than by an ffmpeg process per frame on the node (about a quarter of a CPU second, taken
from the render on a machine whose cores Blender fills). The frame is read back from its file,
scaled and saved with Image.save, which converts float images (EXR) from linear to sRGB and
leaves byte images (PNG, already through the view transform) as they are, as the node's ffmpeg
fallback does. One image datablock is reused for every frame and never removed: deleting a
datablock tags every depsgraph for a relations rebuild, the render's included.
"""

import argparse
import json
import os
import sys
import time
import traceback

import bpy


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="hot_render.py")
    parser.add_argument("--events-fd", type=int, required=True)
    return parser.parse_args(argv)


class Events:
    """Writes one JSON object per line straight to the events fd (no buffer), so the node sees it at once."""

    def __init__(self, fd):
        self.fd = fd

    def send(self, **event):
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8")
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


def preview_path_for(frame_path):
    """.../frame_000007.png -> .../frame_000007.preview.jpg (never the frame itself)."""
    return os.path.splitext(frame_path)[0] + ".preview.jpg"


class Previewer:
    """Writes small JPEG previews of saved frames, reusing one image datablock."""

    NAME = "farm-frame-preview"

    def __init__(self):
        self.image = None

    def write(self, frame_path, width, quality):
        """Writes the preview of `frame_path`; returns its path. Raises on any failure."""
        out = preview_path_for(frame_path)
        image = self.image
        if image is None or image.name not in bpy.data.images:
            image = bpy.data.images.load(frame_path, check_existing=False)
            image.name = self.NAME
            self.image = image
        else:
            # filepath_raw: setting `filepath` would reload through its update callback as well.
            image.filepath_raw = frame_path
            image.reload()
        try:
            w, h = image.size
            if w == 0 or h == 0:
                raise RuntimeError("Blender could not read %s" % frame_path)
            if w > width:
                image.scale(width, max(1, round(h * width / w)))
            image.file_format = "JPEG"
            image.save(filepath=out, quality=quality)
        except Exception:
            try:
                os.remove(out)
            except OSError:
                pass
            raise
        finally:
            # The full-size pixels are not needed until the next frame reloads them.
            image.buffers_free()
        return out


def small_png(scene, limit):
    """Whether the scene saves PNG frames at most `limit` pixels wide (the node skips those too)."""
    render = scene.render
    return render.image_settings.file_format == "PNG" and render.resolution_x * render.resolution_percentage // 100 <= limit


def contiguous_runs(frames):
    """[3, 4, 5, 9, 10] -> [(3, 5), (9, 10)]."""
    runs = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return [tuple(run) for run in runs]


def set_frame_range(scene, start, end):
    """Sets the scene's range in the order that never makes Blender clamp one end to the other."""
    if start > scene.frame_end:
        scene.frame_end = end
        scene.frame_start = start
    else:
        scene.frame_start = start
        scene.frame_end = end


class HotRenderer:
    def __init__(self, events):
        self.events = events
        self.scene = bpy.context.scene
        # The file's own range: stepping starts at its first frame, as `blender -a` does.
        self.origin = self.scene.frame_start
        self.unbaked = unbaked_caches(self.scene)
        self.sequential = len(self.unbaked) > 0
        # The frame the scene was last stepped to in order, or None when its state did not come
        # from stepping (freshly loaded, or jumped to a frame before the start).
        self.stepped_to = None
        # The command being rendered, for the render handlers.
        self.current = None
        self.previewer = Previewer()
        render = self.scene.render
        # Settings a farm must not inherit from the file (see OVERWRITE_OUTPUT_EXPR in
        # render-args.ts): always overwrite, never write placeholders, always add the extension.
        render.use_overwrite = True
        render.use_placeholder = False
        render.use_file_extension = True
        bpy.app.handlers.render_pre.append(self.on_render_pre)
        bpy.app.handlers.render_write.append(self.on_render_write)

    def go_to(self, frame):
        """Makes `frame` the scene's current frame the way a sequential render would reach it."""
        scene = self.scene
        origin = self.origin
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

    def on_render_pre(self, scene, *_):
        current = self.current
        if current is None:
            return
        frame = scene.frame_current
        current["frame_started_at"] = time.monotonic()
        self.events.send(event="frame_started", id=current["id"], frame=frame)

    def on_render_write(self, scene, *_):
        current = self.current
        if current is None:
            return
        frame = scene.frame_current
        now = time.monotonic()
        path = scene.render.frame_path(frame=frame)
        current["written"].add(frame)
        preview = {}
        settings = current.get("preview")
        if settings and not small_png(scene, settings.get("skip_png_up_to", 0)):
            preview_started = time.monotonic()
            try:
                preview["preview_path"] = self.previewer.write(path, settings["width"], settings["quality"])
            except Exception as err:  # noqa: BLE001 - a preview never fails the frame
                preview["preview_error"] = str(err).strip() or type(err).__name__
            preview["preview_seconds"] = round(time.monotonic() - preview_started, 4)
        rss, peak = memory_mb()
        self.events.send(
            event="frame_saved",
            id=current["id"],
            frame=frame,
            path=path,
            render_seconds=round(now - current.get("frame_started_at", now), 4),
            step_seconds=round(current.pop("step_seconds", 0.0), 4),
            rss_mb=rss,
            peak_rss_mb=peak,
            **preview
        )

    def render(self, command):
        command_id = command.get("id")
        frames = command.get("frames")
        output = command.get("output")
        if not isinstance(frames, list) or not frames or not all(isinstance(f, int) for f in frames):
            raise ValueError("render needs a non-empty list of whole frames")
        if any(b <= a for a, b in zip(frames, frames[1:])):
            raise ValueError("render needs frames in ascending order, each once")
        if not isinstance(output, str) or not os.path.isabs(output):
            raise ValueError("render needs an absolute output pattern")
        preview = command.get("preview")
        if preview is not None and not (
            isinstance(preview, dict)
            and isinstance(preview.get("width"), int) and preview["width"] >= 1
            and isinstance(preview.get("quality"), int) and 1 <= preview["quality"] <= 100
            and isinstance(preview.get("skip_png_up_to", 0), int) and preview.get("skip_png_up_to", 0) >= 0
        ):
            raise ValueError("preview must be null or {\"width\": pixels >= 1, \"quality\": 1 to 100, \"skip_png_up_to\": pixels >= 0}")
        for first, last in contiguous_runs(frames):
            if not self.render_run(command_id, first, last, output, preview):
                return
        self.events.send(event="done", id=command_id, frames=len(frames))

    def render_run(self, command_id, first, last, output, preview=None):
        """
        Renders first..last with Blender's own animation render (what `-s first -e last -a`
        runs), so the render keeps its depsgraph from frame to frame instead of building it
        again for each. Returns False after reporting an error.
        """
        scene = self.scene
        file_range = (scene.frame_start, scene.frame_end, scene.frame_step)
        self.current = {"id": command_id, "written": set(), "preview": preview}
        try:
            started = time.monotonic()
            if self.sequential:
                # The render starts from the state a sequential render has at `first`.
                self.go_to(first)
            self.current["step_seconds"] = time.monotonic() - started
            scene.render.filepath = output
            set_frame_range(scene, first, last)
            scene.frame_step = 1
            result = bpy.ops.render.render(animation=True)
            if result != {"FINISHED"}:
                raise RuntimeError("bpy.ops.render.render returned %s" % sorted(result))
            missing = [f for f in range(first, last + 1) if f not in self.current["written"]]
            if missing:
                raise RuntimeError("Blender did not write frame(s) %s" % ", ".join(str(f) for f in missing[:10]))
        except Exception as err:  # noqa: BLE001 - every failure is reported, then the node decides
            written = self.current["written"]
            failed = next((f for f in range(first, last + 1) if f not in written), None)
            self.events.send(
                event="error",
                id=command_id,
                frame=failed,
                message=str(err).strip() or type(err).__name__,
                traceback=traceback.format_exc(),
            )
            return False
        finally:
            self.current = None
            set_frame_range(scene, file_range[0], file_range[1])
            scene.frame_step = file_range[2]
        return True


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
