"""The add-on's buttons. HTTP never runs in Blender's main thread while the interface is up: it
goes to a background thread, and a timer (`bpy.app.timers`) reports its progress in the status bar
and hands its result back to the main thread, the only one that may touch bpy data. In background
mode (`blender -b`) there is no interface to keep alive, so everything runs to the end in place.
"""

import os
import threading

import bpy

from . import settings, submit
from .client import FarmError, Master

# What the panel shows; written by the main thread only (timers apply what threads produced).
# `note`: (icon, text) saying how the last background task ended, None while one runs.
STATE = {"check": None, "jobs": {}, "busy": None, "note": None}
# Jobs in these states change no more: the panel stops refreshing them.
FINAL = {"completed", "failed", "canceled"}
POLL_SECONDS = 0.25
WATCH_SECONDS = 3.0


class Background:
    """One piece of HTTP work in a thread: its status line, its fraction done, its outcome."""

    def __init__(self, label, work, done):
        self.label, self.done = label, done
        self.status, self.fraction = label, 0.0
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)

    def _run(self, work):
        try:
            self.result = work(self)
        except Exception as err:  # any failure is shown to the artist, not lost in a thread
            self.error = err

    def say(self, text):
        self.status = text

    def progress(self, fraction):
        self.fraction = fraction


def status_bar(text):
    """Shows `text` in every window's status bar (None clears it)."""
    for window in bpy.context.window_manager.windows:
        try:
            window.workspace.status_text_set(text)
        except (AttributeError, RuntimeError):
            pass


def redraw():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()


def note(icon, text):
    """Says in the panel how a background task ended (an operator's report is over by then)."""
    STATE["note"] = (icon, text)
    print("render_farm: " + text, flush=True)


def start(label, work, done):
    """Runs `work(task)` in a thread; then `done(task)` in the main thread."""
    task = Background(label, work, done)
    STATE.update(busy=task, note=None)
    task.thread.start()
    shown = [None]

    def poll():
        if task.thread.is_alive():
            line = "%s (%d%%)" % (task.status, round(task.fraction * 100))
            if line != shown[0]:
                shown[0] = line
                status_bar("Render Farm: " + line)
                # The panel shows the same line: Blender redraws it only when asked.
                redraw()
            return POLL_SECONDS
        STATE["busy"] = None
        status_bar(None)
        task.done(task)
        redraw()
        return None

    # Persistent: opening another file meanwhile must not drop the task's ending.
    bpy.app.timers.register(poll, first_interval=POLL_SECONDS, persistent=True)
    return task


def stop():
    """Unregistering: forget what the panel shows (threads are daemons and end with Blender)."""
    STATE.update(check=None, jobs={}, busy=None, note=None)


@bpy.app.handlers.persistent
def file_loaded(*_args):
    """Check's lists were about the file that was open before."""
    STATE["check"] = None


def master():
    url, token = settings.connection()
    return Master(url, token)


def watch(job_id):
    """Refreshes the job's progress every few seconds until it ends (interface only)."""
    farm = master()

    def work(_task):
        return farm.json("GET", "/jobs/%s" % job_id)

    def done(task):
        if task.error is None:
            STATE["jobs"][job_id] = task.result
        if task.error is None and task.result["status"] not in FINAL:
            bpy.app.timers.register(lambda: watch(job_id), first_interval=WATCH_SECONDS, persistent=True)

    # A quiet refresh: no status bar line.
    task = Background("refreshing", work, done)
    task.thread.start()

    def poll():
        if task.thread.is_alive():
            return POLL_SECONDS
        task.done(task)
        redraw()
        return None

    bpy.app.timers.register(poll, first_interval=POLL_SECONDS, persistent=True)
    return None


class RENDER_FARM_OT_check(bpy.types.Operator):
    """List the files that will travel with this .blend, the missing ones, and those outside the project that will not"""

    bl_idname = "render_farm.check"
    bl_label = "Check"

    def execute(self, context):
        if not bpy.data.filepath:
            self.report({"ERROR"}, "Save the .blend first")
            return {"CANCELLED"}
        from . import deps

        checked = submit.check(deps.list_dependencies(), bpy.data.filepath)
        STATE["check"] = checked
        summary = "%d file(s) will travel, %d missing, %d outside the project left out" % (
            len(checked["travel"]), len(checked["missing"]), len(checked["outside"]))
        if bpy.app.background:
            print("render_farm: " + summary)
            for warning in checked["warnings"]:
                print("warning: " + warning)
        self.report({"WARNING"} if checked["warnings"] else {"INFO"}, summary)
        return {"FINISHED"}


class RENDER_FARM_OT_submit(bpy.types.Operator):
    """Send this .blend as it is now (unsaved changes included) with its dependencies to the farm"""

    bl_idname = "render_farm.submit"
    bl_label = "Submit"

    def execute(self, context):
        if STATE["busy"] is not None:
            self.report({"ERROR"}, "Render Farm is busy: %s" % STATE["busy"].status)
            return {"CANCELLED"}
        scene = context.scene
        try:
            plan = submit.prepare(context)
        except submit.SubmitError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        STATE["check"] = plan["checked"]
        for warning in plan["checked"]["warnings"]:
            print("render_farm: warning: " + warning)
        farm = master()
        if bpy.app.background:
            try:
                job = submit.send(plan, farm, on_status=lambda text: print("render_farm: " + text))
            except FarmError as err:
                self.report({"ERROR"}, str(err))
                return {"CANCELLED"}
            scene.render_farm.last_job_id = job["job_id"]
            # On a line of its own, for pipelines that script the add-on.
            print("job_id=%s" % job["job_id"], flush=True)
            return {"FINISHED"}

        scene_name = scene.name

        def done(task):
            if task.error is not None:
                note("ERROR", "Submission failed: %s" % task.error)
                return
            job_id = task.result["job_id"]
            print("job_id=%s" % job_id, flush=True)
            # The artist may have opened another file meanwhile: its scenes did not make the job.
            target = bpy.data.scenes.get(scene_name) if bpy.data.filepath == plan["main_blend"] else None
            if target is None:
                note("INFO", "Submitted job %s from %s, no longer open" % (job_id, os.path.basename(plan["main_blend"])))
                return
            target.render_farm.last_job_id = job_id
            STATE["jobs"][job_id] = None
            watch(job_id)

        start("submitting", lambda task: submit.send(plan, farm, task.say, task.progress), done)
        self.report({"INFO"}, "Submitting to %s" % farm.url)
        return {"FINISHED"}


class RENDER_FARM_OT_refresh(bpy.types.Operator):
    """Fetch the last job's progress from the master"""

    bl_idname = "render_farm.refresh"
    bl_label = "Refresh"

    def execute(self, context):
        job_id = context.scene.render_farm.last_job_id
        if job_id:
            watch(job_id)
        return {"FINISHED"}


class RENDER_FARM_OT_open_dashboard(bpy.types.Operator):
    """Open the last job's page on the farm's dashboard"""

    bl_idname = "render_farm.open_dashboard"
    bl_label = "Open in Dashboard"

    def execute(self, context):
        bpy.ops.wm.url_open(url="%s/#/jobs/%s" % (master().url, context.scene.render_farm.last_job_id))
        return {"FINISHED"}


class RENDER_FARM_OT_download_frames(bpy.types.Operator):
    """Download the last job's rendered frames into the scene's output folder"""

    bl_idname = "render_farm.download_frames"
    bl_label = "Download Frames"

    def execute(self, context):
        job_id = context.scene.render_farm.last_job_id
        if not job_id:
            self.report({"ERROR"}, "No job submitted from this scene yet")
            return {"CANCELLED"}
        out = bpy.path.abspath(context.scene.render.filepath)
        folder = out if out.endswith(("/", "\\")) else os.path.dirname(out)
        farm = master()

        def work(task):
            os.makedirs(folder, exist_ok=True)
            frames = farm.frames(job_id)
            for i, frame in enumerate(frames):
                task.say("downloading frame %d (%d/%d)" % (frame["frame"], i + 1, len(frames)))
                task.progress(i / max(1, len(frames)))
                path = os.path.join(folder, os.path.basename(frame["file_name"]))
                with open(path + ".part", "wb") as f:
                    f.write(farm.request("GET", frame["url"], timeout=300))
                os.replace(path + ".part", path)
            return len(frames)

        def done(task):
            if task.error is not None:
                note("ERROR", "Download failed: %s" % task.error)
            else:
                note("INFO", "%d frame(s) downloaded to %s" % (task.result, folder))

        if bpy.app.background:
            task = Background("downloading", work, done)
            task._run(work)
            done(task)
            return {"FINISHED"} if task.error is None else {"CANCELLED"}
        start("downloading", work, done)
        return {"FINISHED"}


CLASSES = (RENDER_FARM_OT_check, RENDER_FARM_OT_submit, RENDER_FARM_OT_refresh, RENDER_FARM_OT_open_dashboard, RENDER_FARM_OT_download_frames)
