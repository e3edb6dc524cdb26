"""A submission in two steps, as `farm submit` does it (cli/commands/submit.ts):

  1. `prepare` (Blender's main thread, it reads bpy): lists what the open file needs (deps.py),
     leaves out what lies outside the project folder, and saves a copy of the file as the artist
     sees it, unsaved changes included, into a temporary folder; the .blend on disk is untouched.
  2. `send` (any thread, no bpy): sends the copy and its dependencies file by file, as a manifest
     of their paths relative to the .blend's folder (protocol/manifest.ts, cli/project-upload.ts):
     `POST /manifests` answers which files the master lacks, each of those is uploaded by SHA-256
     with the resumable blob API, and `POST /jobs` creates the job (kind "manifest"). A
     resubmission after a tweak moves only what changed. A .blend that needs nothing else is sent
     alone (kind "blend").
"""

import os
import re
import shutil
import tempfile

import bpy

from . import deps
from .client import FarmError, sha256_of_file

MANIFEST_VERSION = 1
SIMPLE_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
FRAME_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*(?:x\s*(\d+)\s*)?)?$")
MAX_WARNINGS, MAX_WARNING_CHARS = 200, 1000
MAX_PREVIEW_VIDEO_FRAMES = 10_000


class SubmitError(Exception):
    """Something the artist can fix, said in words."""


def frame_count(text):
    """How many frames a list like `1-100x5,120` names, or None when it does not parse here
    (the master has the last word on frame lists)."""
    total = 0
    for part in text.split(","):
        match = FRAME_PART.match(part)
        if not match:
            return None
        start = int(match.group(1))
        end = int(match.group(2) or start)
        step = int(match.group(3) or 1)
        if end < start or step < 1:
            return None
        total += (end - start) // step + 1
    return total


def frames_fields(rf, scene):
    """The job's frames: `start_frame`/`end_frame` for one plain range, else a `frames` list."""
    text = rf.frames.strip()
    if not text:
        if scene.frame_step > 1:
            text = "%d-%dx%d" % (scene.frame_start, scene.frame_end, scene.frame_step)
        else:
            return {"start_frame": scene.frame_start, "end_frame": scene.frame_end}, scene.frame_end - scene.frame_start + 1
    match = SIMPLE_RANGE.match(text)
    if match:
        start, end = int(match.group(1)), int(match.group(2) or match.group(1))
        if end < start:
            raise SubmitError("frames %s: the first frame is after the last" % text)
        return {"start_frame": start, "end_frame": end}, end - start + 1
    return {"frames": text}, frame_count(text)


def check(report, main_blend):
    """What will travel and what will not: the Check button's lists and the job's warnings."""
    files = [f["path"] for f in report["files"]]
    project, inside, outside = deps.split_by_project(main_blend, files)
    rel = lambda p: os.path.relpath(p, project)
    warnings = []
    for dep in report["missing"]:
        warnings.append("missing %s %s%s, needed by %s: not found at %s" % (
            dep["kind"], dep["ref"], " (%s)" % dep["id"] if dep["id"] else "", dep["from"], dep["path"]))
    for dep in report["unportable"]:
        warnings.append("%s %s%s in %s is an absolute path: render nodes will not find it. "
                        "Make paths relative in Blender (File > External Data > Make Paths Relative) and submit again" % (
                            dep["kind"], dep["ref"], " (%s)" % dep["id"] if dep["id"] else "", dep["from"]))
    for path, real in outside:
        where = path if real == path else "%s, a link to %s" % (path, real)
        warnings.append("left out %s: it is outside the .blend's folder %s, so the render goes without it" % (where, project))
    if not report["scene"]["has_camera"]:
        warnings.append('scene "%s" has no active camera: Blender will not render it' % report["scene"]["name"])
    return {
        "project": project,
        "inside": inside,
        "travel": [rel(p) for p in inside],
        "missing": [d["path"] for d in report["missing"]] + [d["path"] for d in report["unportable"]],
        "outside": [p for p, _real in outside],
        "warnings": warnings,
    }


def job_options(rf, scene, main_blend):
    fields, count = frames_fields(rf, scene)
    options = dict(fields)
    if rf.chunk_size > 0:
        options["chunk_size"] = rf.chunk_size
    if rf.order != "sequential":
        options["order"] = rf.order
    options["priority"] = rf.priority
    options["name"] = rf.name.strip() or os.path.splitext(os.path.basename(main_blend))[0]
    if rf.device != "any":
        options["device"] = rf.device
    tags = [t.strip() for t in rf.tags.split(",") if t.strip()]
    if tags:
        options["tags"] = tags
    if rf.preview_video and count is not None and 2 <= count <= MAX_PREVIEW_VIDEO_FRAMES:
        options["preview_video"] = True
    return options


def prepare(context):
    """Main thread: the plan `send` carries out. Raises SubmitError for what the artist must fix."""
    main_blend = bpy.data.filepath
    if not main_blend:
        raise SubmitError("save the .blend first: its relative paths (//) need a folder to mean something")
    scene = context.scene
    rf = scene.render_farm
    report = deps.list_dependencies()
    checked = check(report, main_blend)
    options = job_options(rf, scene, main_blend)
    options["warnings"] = [w[:MAX_WARNING_CHARS] for w in checked["warnings"][:MAX_WARNINGS]]
    tmp = tempfile.mkdtemp(prefix="render-farm-")
    copy = os.path.join(tmp, os.path.basename(main_blend))
    # copy=True leaves bpy.data.filepath and the file on disk alone; relative_remap=False keeps
    # the `//` paths as written, relative to the original's folder, where the bundle puts them.
    bpy.ops.wm.save_as_mainfile(filepath=copy, copy=True, relative_remap=False, compress=False)
    return {"tmp": tmp, "copy": copy, "main_blend": main_blend, "checked": checked, "options": options}


def _project_files(plan):
    """(path in the project, file on disk) for the copy of the .blend and every dependency inside
    the project folder, sorted by path, as cli/bundle.ts names them."""
    project = plan["checked"]["project"]
    entries = [(os.path.relpath(plan["main_blend"], project), plan["copy"])]
    entries += [(os.path.relpath(p, project), p) for p in plan["checked"]["inside"]]
    return sorted({name.replace(os.sep, "/"): source for name, source in entries}.items())


def _upload_project(plan, master, on_status, on_progress):
    """Hashes the project's files, posts the manifest, uploads the files the master lacks.
    Returns the manifest's SHA-256."""
    entries = _project_files(plan)
    files, sources = [], {}
    total = sum(os.path.getsize(source) for _name, source in entries)
    hashed = 0
    for i, (name, source) in enumerate(entries):
        on_status("hashing %d/%d files (%.1f MB)" % (i + 1, len(entries), total / 1e6))
        size = os.path.getsize(source)
        sha = sha256_of_file(source)
        hashed += size
        on_progress(hashed / total if total else 1.0)
        files.append({"path": name, "sha256": sha, "size": size})
        sources[sha] = source
    main_blend = os.path.relpath(plan["main_blend"], plan["checked"]["project"]).replace(os.sep, "/")
    answer = master.json("POST", "/manifests", {"version": MANIFEST_VERSION, "main_blend": main_blend, "files": files})
    missing = answer["missing"]
    need = answer["missing_bytes"]
    if not missing:
        on_status("the master has all %d files already: nothing to upload" % answer["files"])
    finished = 0
    for blob in missing:
        source = sources.get(blob["sha256"])
        if source is None:
            raise FarmError("the master asked for file %s, which is not in this project" % blob["sha256"][:12])

        def progress(done, _total, base=finished):
            on_progress((base + done) / need if need else 1.0)
            on_status("uploading %.1f of %.1f MB (%d of %d files missing)" % ((base + done) / 1e6, need / 1e6, len(missing), answer["files"]))

        master.upload_blob(source, blob["sha256"], progress)
        finished += blob["size"]
    return answer["manifest_sha256"]


def send(plan, master, on_status=lambda text: None, on_progress=lambda fraction: None):
    """Any thread: uploads what the master lacks and creates the job; returns `POST /jobs`'s answer."""
    try:
        body = dict(plan["options"])
        if plan["checked"]["inside"]:
            body["blob_sha256"] = _upload_project(plan, master, on_status, on_progress)
            body["kind"] = "manifest"
        else:
            upload = plan["copy"]
            body["kind"] = "blend"
            size = os.path.getsize(upload)
            on_status("hashing %.1f MB" % (size / 1e6))
            body["blob_sha256"] = sha256_of_file(upload)

            def progress(done, total):
                on_progress(done / total if total else 1.0)
                on_status("uploading %.1f of %.1f MB" % (done / 1e6, total / 1e6))

            master.upload_blob(upload, body["blob_sha256"], progress)
        on_status("creating the job")
        if not body["warnings"]:
            del body["warnings"]
        return master.json("POST", "/jobs", body)
    finally:
        shutil.rmtree(plan["tmp"], ignore_errors=True)
