"""List the files a .blend needs to render, as JSON. Run by `farm submit` inside Blender:

    blender SAFE_ARGS MAIN.blend --python list_deps.py -- OUT.json

(SAFE_ARGS: worker-node/blender/launch.ts; they keep the Python a .blend carries from running.)

The lister itself is the add-on's (addon/render_farm/deps.py), loaded by path so that the CLI and
the add-on share one copy and this does not need the add-on installed.
"""

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEPS = os.path.join(HERE, "..", "..", "addon", "render_farm", "deps.py")


def out_path():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if len(argv) != 1:
        raise SystemExit("usage: blender SAFE_ARGS FILE --python list_deps.py -- OUT.json")
    return argv[0]


def main():
    out = out_path()
    spec = importlib.util.spec_from_file_location("render_farm_deps", DEPS)
    deps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deps)
    result = deps.list_dependencies()
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    print("list_deps: %d files, %d missing, %d unportable" % (len(result["files"]), len(result["missing"]), len(result["unportable"])))


main()
