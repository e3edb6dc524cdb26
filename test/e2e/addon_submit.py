"""Run by test/e2e/addon.test.ts inside `blender -b PROJECT/scene.blend`: installs the add-on from
the zip the master served, makes an unsaved change that needs a file outside the project, and
submits through the add-on's operator, as a pipeline script would; then submits the unchanged
scene again, which must upload no file (the master has them all).

    blender -b scene.blend --python-exit-code 1 --python addon_submit.py -- ADDON.zip FRAMES
"""

import sys

import bpy

zip_path, frames = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.preferences.addon_install(filepath=zip_path)
bpy.ops.preferences.addon_enable(module="render_farm")

# Not saved: the submission must carry it, and leave the file on disk alone. It lies outside the
# project folder, so it must stay behind with a warning.
outside = bpy.data.images.load("//../outside/secret.png")
outside.use_fake_user = True

rf = bpy.context.scene.render_farm
rf.frames = frames
rf.name = "from-blender"
rf.preview_video = False
rf.order = "progressive"
for _ in range(2):
    rf.last_job_id = ""
    result = bpy.ops.render_farm.submit()
    assert result == {"FINISHED"}, result
    assert rf.last_job_id, "last_job_id was not set"
    print("last_job_id=%s" % rf.last_job_id, flush=True)
