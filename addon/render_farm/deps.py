"""The files a .blend needs to render: one lister for the `farm` CLI and the Blender add-on.

The CLI runs it inside Blender through cli/deps/list_deps.py, which imports this file by path:

    blender -b --factory-startup --disable-autoexec MAIN.blend --python cli/deps/list_deps.py -- OUT.json

The add-on calls `list_dependencies()` in the artist's session, on the file as it is in memory
(unsaved changes included). Either way Blender has opened the .blend with its linked libraries
(recursively, cycles included) and the data they provide: exactly what a render node will load.
Every path is resolved the way Blender resolves it, relative to the file that holds the data (the
main file or a library), so nothing here guesses at Blender's rules, and nothing is written back
to any .blend.

What is collected:
  - images (single files, UDIM tiles for `<UDIM>`/`<UVTILE>`, numbered sequences, movies);
  - linked libraries; sounds; movie clips; fonts; volumes; Alembic/USD cache files;
  - sequencer image and movie strips;
  - point caches on disk (particles, cloth, soft bodies: `blendcache_<file>/` or an external
    folder), fluid domain caches, ocean caches, mesh caches;
  - then every path `bpy.utils.blend_paths` knows that the above missed.

Paths written as absolute (or relative to the working folder rather than `//`) are reported
apart: they will not resolve on a node, whatever is bundled.

Only the project travels: `split_by_project` sorts the files into those inside the .blend's folder
and those outside it (the rule cli/bundle.ts `splitByProject` applies for the CLI).
"""

import os
import re

import bpy

FILE_KINDS_WITH_SOURCES = {"FILE", "SEQUENCE", "MOVIE", "TILED"}
# A folder of caches is bundled whole, but not an unbounded one by mistake.
MAX_FILES_PER_DIR = 100_000


class Collector:
    def __init__(self):
        self.files = {}
        self.dirs = {}
        self.missing = {}
        self.unportable = {}
        self.seen_refs = set()
        # Paths Blender's path walker reports that are not read when rendering.
        self.ignored = set()

    @staticmethod
    def holder(id_data):
        """The .blend that holds `id_data`'s path: its library's file, or the main file."""
        if isinstance(id_data, bpy.types.Library):
            lib = id_data.parent
        else:
            lib = getattr(id_data, "library", None) if id_data is not None else None
        return os.path.normpath(bpy.path.abspath(lib.filepath, library=lib.parent) if lib else bpy.data.filepath)

    def resolve(self, ref, id_data):
        """Absolute, normalised path of `ref` as Blender reads it, or None for non-portable refs."""
        lib = getattr(id_data, "library", None) if id_data is not None else None
        if isinstance(id_data, bpy.types.Library):
            lib = id_data.parent
        path = bpy.path.abspath(ref, library=lib)
        return os.path.normpath(path)

    def note(self, kind, ref, id_data, path=None, is_dir=False, optional=False):
        """Records `ref` (as written in the file) of data `id_data`; `path` overrides the resolution."""
        if not ref:
            return
        owner = self.holder(id_data)
        name = getattr(id_data, "name", "")
        key = (kind, ref, owner, path)
        if key in self.seen_refs:
            return
        self.seen_refs.add(key)
        entry = {"kind": kind, "ref": ref, "from": owner, "id": name}
        portable = ref.startswith("//")
        if path is None:
            path = self.resolve(ref, id_data)
        entry["path"] = path
        if not portable:
            # Absolute, or relative to the working folder: a node cannot find it at that path.
            self.unportable[path] = entry
            return
        if "\\" in ref:
            entry["backslashes"] = True
        if is_dir:
            if os.path.isdir(path):
                self.dirs.setdefault(path, entry)
            elif not optional:
                self.missing.setdefault(path, entry)
            return
        if os.path.isfile(path):
            self.files.setdefault(path, entry)
        elif not optional:
            self.missing.setdefault(path, entry)

    def sequence(self, kind, ref, id_data):
        """A numbered file sequence: every file beside the first that differs only in its number."""
        first = self.resolve(ref, id_data)
        folder, base = os.path.split(first)
        match = re.match(r"^(.*?)(\d+)(\D*)$", base)
        if not match or not os.path.isdir(folder):
            self.note(kind, ref, id_data)
            return
        pattern = re.compile("^" + re.escape(match.group(1)) + r"\d+" + re.escape(match.group(3)) + "$")
        found = False
        for name in sorted(os.listdir(folder)):
            if pattern.match(name):
                found = True
                self.note(kind, ref, id_data, path=os.path.join(folder, name))
        if not found:
            self.note(kind, ref, id_data)

    def tiles(self, image):
        ref = image.filepath
        if "<UDIM>" not in ref and "<UVTILE>" not in ref:
            # Blender 3.x also stores tiled images by their first tile's name (cube.1001.png).
            match = re.match(r"^(.*[._-])(1\d{3})(\.[^./\\]+)$", ref)
            if not match:
                self.note("image", ref, image)
                return
            ref = match.group(1) + "<UDIM>" + match.group(3)
        for tile in image.tiles:
            number = tile.number
            u = (number - 1001) % 10 + 1
            v = (number - 1001) // 10 + 1
            tile_ref = ref.replace("<UDIM>", str(number)).replace("<UVTILE>", "u%d_v%d" % (u, v))
            self.note("udim tile", tile_ref, image)


def collect_images(c):
    for image in bpy.data.images:
        if image.source not in FILE_KINDS_WITH_SOURCES:
            continue
        if image.packed_file is not None or len(getattr(image, "packed_files", [])) > 0:
            continue
        if image.source == "TILED":
            c.tiles(image)
        elif image.source == "SEQUENCE":
            c.sequence("image sequence", image.filepath, image)
        else:
            c.note("image" if image.source == "FILE" else "movie", image.filepath, image)


def collect_libraries(c):
    for lib in bpy.data.libraries:
        if lib.packed_file is not None:
            continue
        c.note("library", lib.filepath, lib)
        # Point caches of a library's objects live beside the library file.
        path = c.resolve(lib.filepath, lib)
        stem = os.path.splitext(os.path.basename(path))[0]
        c.note("point cache", "//blendcache_%s" % stem, lib, path=os.path.join(os.path.dirname(path), "blendcache_" + stem), is_dir=True, optional=True)


def collect_simple(c):
    for sound in bpy.data.sounds:
        if sound.packed_file is None:
            c.note("sound", sound.filepath, sound)
    for clip in bpy.data.movieclips:
        if clip.source == "SEQUENCE":
            c.sequence("movie clip", clip.filepath, clip)
        else:
            c.note("movie clip", clip.filepath, clip)
    for font in bpy.data.fonts:
        if font.packed_file is None and font.filepath and font.filepath != "<builtin>":
            c.note("font", font.filepath, font)
    for volume in getattr(bpy.data, "volumes", []):
        if volume.packed_file is not None:
            continue
        if volume.is_sequence:
            c.sequence("volume", volume.filepath, volume)
        else:
            c.note("volume", volume.filepath, volume)
    for cache in bpy.data.cache_files:
        if getattr(cache, "is_sequence", False):
            c.sequence("cache file", cache.filepath, cache)
        else:
            c.note("cache file", cache.filepath, cache)


def collect_sequencer(c):
    for scene in bpy.data.scenes:
        editor = scene.sequence_editor
        if editor is None:
            continue
        # `strips_all` since Blender 4.4; `sequences_all`, its old name, is gone in 5.0.
        strips = editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all
        for strip in strips:
            if strip.type == "IMAGE":
                for element in strip.elements:
                    c.note("sequencer image", strip.directory.rstrip("/\\") + "/" + element.filename, scene)
            elif strip.type == "MOVIE":
                c.note("sequencer movie", strip.filepath, scene)


def point_caches(obj):
    for psys in obj.particle_systems:
        yield psys.point_cache
    for mod in obj.modifiers:
        cache = getattr(mod, "point_cache", None)
        if cache is not None:
            yield cache


def collect_object_caches(c):
    for obj in bpy.data.objects:
        holder = c.holder(obj)
        stem = os.path.splitext(os.path.basename(holder))[0]
        for cache in point_caches(obj):
            if cache.filepath and not cache.use_external:
                # Kept in the file but unused: Blender reads blendcache_<file>/ (or memory).
                c.ignored.add(c.resolve(cache.filepath, obj))
            if not cache.use_disk_cache and not cache.use_external:
                continue
            if cache.use_external and cache.filepath:
                c.note("point cache", cache.filepath, obj, is_dir=True)
            else:
                folder = os.path.join(os.path.dirname(holder), "blendcache_" + stem)
                c.note("point cache", "//blendcache_" + stem, obj, path=folder, is_dir=True)
        for mod in obj.modifiers:
            if mod.type == "FLUID" and mod.fluid_type == "DOMAIN":
                c.note("fluid cache", mod.domain_settings.cache_directory, obj, is_dir=True, optional=True)
            elif mod.type == "OCEAN" and mod.is_cached:
                c.note("ocean cache", mod.filepath, obj, is_dir=True)
            elif mod.type == "MESH_CACHE":
                c.note("mesh cache", mod.filepath, obj)
    # The main file's disk caches are read from here even when no object asks for them by name.
    stem = os.path.splitext(os.path.basename(bpy.data.filepath))[0]
    main_cache = os.path.join(os.path.dirname(bpy.data.filepath), "blendcache_" + stem)
    c.note("point cache", "//blendcache_" + stem, None, path=main_cache, is_dir=True, optional=True)


def collect_remaining(c):
    """Whatever Blender's own path walker knows that the collectors above did not cover."""
    known = set(c.files) | set(c.dirs) | set(c.missing) | set(c.unportable) | c.ignored
    known_refs = {(entry["ref"], entry["from"]) for group in (c.files, c.dirs, c.missing, c.unportable) for entry in group.values()}
    for path in bpy.utils.blend_paths(absolute=True, packed=False, local=False):
        norm = os.path.normpath(path)
        if norm in known or "<UDIM>" in path or "<UVTILE>" in path:
            continue
        if any(norm.startswith(d + os.sep) for d in c.dirs):
            continue
        # blend_paths gives no owner: report it against the main file.
        if (path, bpy.data.filepath) in known_refs:
            continue
        entry = {"kind": "other", "ref": path, "from": bpy.data.filepath, "id": "", "path": norm}
        if os.path.isfile(norm):
            c.files.setdefault(norm, entry)
        elif os.path.isdir(norm):
            c.dirs.setdefault(norm, entry)
        else:
            c.missing.setdefault(norm, entry)


def list_dir(folder):
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            found.append(os.path.join(root, name))
            if len(found) >= MAX_FILES_PER_DIR:
                return found
    return found


def list_dependencies():
    """What the open .blend needs, as the JSON report cli/deps/list-deps.ts reads."""
    c = Collector()
    collect_libraries(c)
    collect_images(c)
    collect_simple(c)
    collect_sequencer(c)
    collect_object_caches(c)
    collect_remaining(c)

    files = [dict(entry, path=path) for path, entry in sorted(c.files.items())]
    for folder, entry in sorted(c.dirs.items()):
        for path in list_dir(folder):
            files.append(dict(entry, path=path, kind=entry["kind"], dir=folder))
    scene = bpy.context.scene
    return {
        "blender_version": bpy.app.version_string,
        "main": os.path.normpath(bpy.data.filepath),
        "scene": {
            "name": scene.name,
            "frame_start": scene.frame_start,
            "frame_end": scene.frame_end,
            "frame_step": scene.frame_step,
            "has_camera": scene.camera is not None,
            "engine": scene.render.engine,
        },
        "files": files,
        "missing": [dict(entry, path=path) for path, entry in sorted(c.missing.items())],
        "unportable": [dict(entry, path=path) for path, entry in sorted(c.unportable.items())],
    }


def _is_within(folder, path):
    rel = os.path.relpath(path, folder)
    return rel != "." and rel != ".." and not rel.startswith(".." + os.sep) and not os.path.isabs(rel)


def split_by_project(main_blend, files):
    """(project folder, inside, outside) for `files` (absolute paths) needed by `main_blend`.

    Outside is a path that leaves the .blend's folder (`//../secret/x.png`), or one inside it that
    is, or goes through, a symbolic link to elsewhere: the real path decides, so a link named like
    a texture cannot bring a file from outside into the bundle. `outside` holds (path, real path).
    """
    project = os.path.dirname(os.path.abspath(main_blend))
    real_project = os.path.realpath(project)
    inside, outside, seen = [], [], set()
    for path in files:
        path = os.path.abspath(path)
        if path in seen:
            continue
        seen.add(path)
        real = os.path.realpath(path)
        if _is_within(project, path) and _is_within(real_project, real):
            inside.append(path)
        else:
            outside.append((path, real))
    return project, inside, outside
