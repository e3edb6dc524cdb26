"""Run by test/e2e/addon-window.test.ts in Blender WITH a window (under Xvfb), not `-b`:

    blender --factory-startup PROJECT/scene.blend --python addon_window.py -- ADDON.zip MASTER_URL RESULT.json SCREENSHOT.png

Installs the add-on from the zip the master served, points its preferences at the master, shows
Output Properties so the panel is drawn, and clicks its buttons the way the interface does
(`'INVOKE_DEFAULT'` from the event loop, with the Properties editor as context): Check, Submit,
then, when the job is done, Open in Dashboard and Download Frames; last, Submit again and open
another file while that uploads. Meanwhile it measures what the artist would see: a 50 ms
timer's ticks (a frozen interface stops them), the status bar's text, and the panel's labels and
buttons at each redraw (recorded by wrapping the panel's draw, so a draw error is caught too).
Everything goes to RESULT.json for the test to judge, a screenshot of the panel after the download
to SCREENSHOT.png for people; then Blender quits.
"""

import faulthandler
import json
import os
import sys
import time
import traceback
import webbrowser

import bpy

zip_path, master_url, result_path, screenshot_path = sys.argv[sys.argv.index("--") + 1:]

RESULT = {
    "blender": bpy.app.version_string,
    "background": bpy.app.background,
    "errors": [],
    "draw_errors": [],
    "draws": 0,
    "status_texts": [],
    "events": {},
}
TICKS = []
# (seconds since start, labels the panel drew, [(operator, enabled)]) per draw of the panel.
DRAWN = []
T0 = time.monotonic()
TICK_SECONDS = 0.05
WAIT_SECONDS = 120.0


def now():
    return time.monotonic() - T0


def event(name):
    RESULT["events"][name] = now()


# A crash names the Python thread it happened in, with every thread's stack.
faulthandler.enable(file=sys.stderr, all_threads=True)

# The add-on, installed as the interface does it.
bpy.ops.preferences.addon_install(filepath=zip_path)
bpy.ops.preferences.addon_enable(module="render_farm")
bpy.context.preferences.addons["render_farm"].preferences.master_url = master_url
addon_ops = sys.modules["render_farm.operators"]


class Recorder:
    """A UILayout that records the labels and buttons drawn on it, then draws them for real."""

    def __init__(self, real, labels, buttons):
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_labels", labels)
        object.__setattr__(self, "_buttons", buttons)

    def __setattr__(self, name, value):
        setattr(self._real, name, value)

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name in ("row", "column", "box", "split"):
            return lambda *a, **k: Recorder(attr(*a, **k), self._labels, self._buttons)
        if name == "label":
            def label(*a, **k):
                self._labels.append(k.get("text", a[0] if a else ""))
                return attr(*a, **k)
            return label
        if name == "operator":
            def operator(*a, **k):
                self._buttons.append((a[0] if a else k["operator"], self._real.enabled))
                return attr(*a, **k)
            return operator
        return attr


class PanelSelf:
    def __init__(self, panel, layout):
        self._panel, self.layout = panel, layout

    def __getattr__(self, name):
        return getattr(self._panel, name)


panel_class = bpy.types.RENDER_FARM_PT_panel
panel_draw = panel_class.draw


def recording_draw(self, context):
    labels, buttons = [], []
    RESULT["draws"] += 1
    try:
        panel_draw(PanelSelf(self, Recorder(self.layout, labels, buttons)), context)
    except Exception:
        RESULT["draw_errors"].append(traceback.format_exc())
        raise
    finally:
        DRAWN.append((now(), labels, buttons))


panel_class.draw = recording_draw

status_text_set = bpy.types.WorkSpace.status_text_set


def recording_status_text_set(self, text):
    RESULT["status_texts"].append([now(), text])
    return status_text_set(self, text)


bpy.types.WorkSpace.status_text_set = recording_status_text_set

OPENED = []
webbrowser.open = lambda url, *a, **k: OPENED.append(url) or True


def tick():
    TICKS.append(now())
    return TICK_SECONDS


def properties_editor():
    window = bpy.context.window_manager.windows[0]
    areas = [a for a in window.screen.areas if a.type == "PROPERTIES"]
    if not areas:
        raise AssertionError("the default screen has no Properties editor")
    area = max(areas, key=lambda a: a.width * a.height)
    region = next(r for r in area.regions if r.type == "WINDOW")
    return window, area, region


def override():
    window, area, region = properties_editor()
    return bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region)


def redraw():
    """Draws the window now, as Blender does between events (the panel's draw runs). Only the
    window is given: an area or region here would stand for every region drawn."""
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window, screen=window.screen):
        bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=1)


def last_panel():
    if not DRAWN:
        return None
    _at, labels, buttons = DRAWN[-1]
    return {"labels": labels, "buttons": buttons}


def click(operator):
    """An operator as a button runs it: invoked from the event loop, in the editor's context."""
    with override():
        return sorted(operator("INVOKE_DEFAULT"))


def wait_until(what, condition, every=0.05, seconds=WAIT_SECONDS):
    """Yields to the event loop until `condition()`. Nothing is drawn from here: what the panel
    shows meanwhile is drawn because the add-on asked Blender to redraw it."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        yield every


def scenario():
    window, area, _region = properties_editor()
    # The biggest Properties editor, alone in the window and on the Output tab: the panel is drawn.
    with override():
        bpy.ops.screen.screen_full_area()
    yield 0.2
    window, area, _region = properties_editor()
    area.spaces.active.context = "OUTPUT"
    redraw()
    yield 0.2
    redraw()
    RESULT["panel_at_start"] = last_panel()

    scene = bpy.context.scene
    rf = scene.render_farm
    # Unsaved changes: a large texture that must travel (so the upload takes a moment), and the
    # output folder the frames are downloaded to.
    big = bpy.data.images.load("//tex/big.png")
    big.use_fake_user = True
    scene.render.filepath = "//render/"
    rf.frames = "1-2"
    rf.name = "from-window"
    rf.preview_video = False
    # As an edit in the interface does, which marks the file modified.
    with override():
        bpy.ops.ed.undo_push(message="the artist's changes")

    RESULT["check"] = click(bpy.ops.render_farm.check)
    checked = addon_ops.STATE["check"]
    RESULT["checked"] = None if checked is None else {k: checked[k] for k in ("travel", "missing", "outside")}
    redraw()
    RESULT["panel_after_check"] = last_panel()

    event("submit_clicked")
    RESULT["dirty_before_submit"] = bpy.data.is_dirty
    RESULT["submit"] = click(bpy.ops.render_farm.submit)
    event("submit_returned")
    # Saving the copy must leave the artist's changes unsaved (Blender still asks before quitting).
    RESULT["dirty_after_submit"] = bpy.data.is_dirty
    RESULT["filepath_after_submit"] = bpy.data.filepath
    yield from wait_until("the submission's job id", lambda: rf.last_job_id != "" and addon_ops.STATE["busy"] is None)
    event("submitted")
    RESULT["job_id"] = rf.last_job_id
    RESULT["submit_failed"] = [t for _at, t in RESULT["status_texts"] if t and "failed" in t]

    def job():
        return addon_ops.STATE["jobs"].get(rf.last_job_id)

    yield from wait_until("the job to end", lambda: job() is not None and job()["status"] in ("completed", "failed", "canceled"))
    event("job_ended")
    yield 0.5
    RESULT["panel_after_job"] = last_panel()

    RESULT["open_dashboard"] = click(bpy.ops.render_farm.open_dashboard)
    RESULT["opened"] = list(OPENED)

    event("download_clicked")
    RESULT["download"] = click(bpy.ops.render_farm.download_frames)
    yield 0.05
    yield from wait_until("the download", lambda: addon_ops.STATE["busy"] is None)
    event("downloaded")
    folder = bpy.path.abspath(scene.render.filepath)
    RESULT["output_folder"] = folder
    RESULT["downloaded"] = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    yield 0.5
    RESULT["panel_at_end"] = last_panel()
    # For people to look at: the panel after a download (taken now, not while measuring), scrolled
    # into view below Output Properties' own panels.
    with override():
        for _ in range(4):
            bpy.ops.view2d.scroll_down(page=True)
    redraw()
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window, screen=window.screen):
        bpy.ops.screen.screenshot(filepath=screenshot_path)

    # Another file opened while a submission uploads: the add-on still ends the submission (its
    # timers outlive the load), and the job is not pinned on the other file's scene.
    other = os.path.join(os.path.dirname(bpy.data.filepath), "other.blend")
    bpy.ops.wm.save_as_mainfile(filepath=other, copy=True)
    rf.frames = "1"
    RESULT["resubmit"] = click(bpy.ops.render_farm.submit)
    with override():
        bpy.ops.wm.open_mainfile(filepath=other)
    RESULT["opened_during_upload"] = bpy.data.filepath
    try:
        yield from wait_until("the submission begun in the other file", lambda: addon_ops.STATE["busy"] is None, every=0.1, seconds=30)
        RESULT["resubmit_ended"] = True
    except AssertionError:
        RESULT["resubmit_ended"] = False
    RESULT["other_last_job_id"] = bpy.context.scene.render_farm.last_job_id
    RESULT["note_after_other_file"] = addon_ops.STATE["note"]


STEPS = scenario()


def finish():
    RESULT["ticks"] = TICKS
    RESULT["drawn"] = DRAWN
    RESULT["last_traceback"] = getattr(sys, "last_traceback", None) is not None
    with open(result_path, "w") as f:
        json.dump(RESULT, f, indent=1)
    bpy.ops.wm.quit_blender()


def step():
    try:
        return next(STEPS)
    except StopIteration:
        pass
    except Exception:
        RESULT["errors"].append(traceback.format_exc())
    finish()
    return None


bpy.app.timers.register(tick, first_interval=TICK_SECONDS, persistent=True)
bpy.app.timers.register(step, first_interval=0.5, persistent=True)
