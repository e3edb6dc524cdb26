/**
 * A project bundle: the main .blend and the files it needs, in one .zip, at their paths relative
 * to a common root folder, so the `//` relative paths inside the .blend (and inside its linked
 * libraries) resolve on a render node exactly as on this machine. Nothing in the .blend is
 * rewritten: the root is the deepest folder that holds the .blend and every dependency.
 *
 * Only the project travels: a file outside the .blend's folder (by its path, or because it is a
 * symbolic link to somewhere else) is left out with a warning, since a path in a .blend is not
 * a reason to upload `~/.ssh`. With `--include-outside` it is sent, and the root widens to take
 * it in: a texture at `//../shared/wood.png` travels as `shared/wood.png` beside
 * `shot/main.blend`, and the warning says so.
 *
 * The archive is deterministic (entries sorted, fixed timestamps and modes), so the same files
 * give the same SHA-256 and a second submission uploads nothing. It is hashed while written.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';
import { missingConsequence, missingKindOf, type MissingKind } from '../protocol/missing-files.ts';
import type { Dependency } from './deps/list-deps.ts';

/** Every entry carries this time, so that touching a file does not change the bundle's hash. */
const FIXED_MTIME = new Date('2000-01-01T00:00:00Z');
/** Formats that are compressed already: storing them is as small and much faster. */
const STORED_EXTENSIONS = new Set([
  'png',
  'jpg',
  'jpeg',
  'webp',
  'exr',
  'gz',
  'zip',
  'zst',
  '7z',
  'mp4',
  'mov',
  'mkv',
  'avi',
  'webm',
  'mp3',
  'ogg',
  'flac',
  'aac',
  'm4a',
  'jp2',
  'tx',
  'vdb',
  'bphys',
]);

export interface BundlePlan {
  /** The folder the archive's paths are relative to. */
  root: string;
  /** The main .blend's path inside the archive, with `/` separators. */
  mainBlend: string;
  /** Absolute source path -> path inside the archive. Sorted by archive path. */
  entries: { source: string; name: string }[];
}

/** The deepest folder that contains every one of `paths` (absolute). */
export function commonRoot(paths: string[]): string {
  const split = paths.map((p) => resolve(p).split(sep));
  const first = split[0]!;
  let depth = first.length;
  for (const parts of split) {
    let i = 0;
    while (i < depth && i < parts.length && parts[i] === first[i]) i++;
    depth = i;
  }
  return first.slice(0, depth).join(sep) || sep;
}

/** A file the .blend needs that lies outside the .blend's folder. */
export interface OutsideFile {
  /** The path Blender reads it by (absolute, `..` resolved). */
  path: string;
  /** Where it is once symbolic links are followed: not `path` for a link out of the folder. */
  real: string;
}

function isWithin(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/**
 * Sorts `files` (absolute) into those inside the folder of `mainBlend` and those outside it.
 * Outside is a path that leaves the folder (`//../secret/x.png`), or one inside it that is, or
 * goes through, a symbolic link to elsewhere: the real path decides, so a link named like a
 * texture cannot bring a file from outside into the bundle.
 */
export async function splitByProject(mainBlend: string, files: string[]): Promise<{ project: string; inside: string[]; outside: OutsideFile[] }> {
  const project = dirname(resolve(mainBlend));
  const realProject = await realpath(project);
  const inside: string[] = [];
  const outside: OutsideFile[] = [];
  for (const path of [...new Set(files.map((f) => resolve(f)))]) {
    // Listed files exist; one gone since is refused when the bundle reads it.
    const real = await realpath(path).catch(() => path);
    if (isWithin(project, path) && isWithin(realProject, real)) inside.push(path);
    else outside.push({ path, real });
  }
  return { project, inside, outside };
}

/** How many names a warning lists before it says "and N more". */
const LISTED_NAMES = 20;

/**
 * The warnings about files outside the project: one per file (or cache folder) left out, saying
 * what the render does without it; or, when they are sent (`included`), one naming them and the
 * folder the bundle root widened to.
 */
export function outsideWarnings(mainBlend: string, outside: OutsideFile[], deps: Dependency[], included: boolean): string[] {
  if (outside.length === 0) return [];
  const main = resolve(mainBlend);
  const project = dirname(main);
  const byPath = new Map(deps.map((d) => [d.path, d]));
  // A cache folder's files are named once, by the folder.
  const groups = new Map<string, { label: string; kind: MissingKind; files: number }>();
  for (const file of outside) {
    const dep = byPath.get(file.path);
    const key = dep?.dir ?? file.path;
    const group = groups.get(key);
    if (group) {
      group.files++;
      continue;
    }
    let label: string;
    if (dep?.dir) {
      const inner = relative(dep.dir, file.path);
      const realDir = file.real.endsWith(`${sep}${inner}`) ? file.real.slice(0, -(inner.length + 1)) : file.real;
      label = `${dep.kind} folder ${dep.ref} (${[dep.dir, realDir === dep.dir ? '' : `a link to ${realDir}`].filter(Boolean).join(', ')})`;
    } else {
      // A library's paths are relative to the library: say which file names it.
      const where = [
        dep && dep.ref !== file.path ? file.path : '',
        file.real === file.path ? '' : `a link to ${file.real}`,
        dep && dep.from !== main ? `named by ${dep.from}` : '',
      ]
        .filter(Boolean)
        .join(', ');
      label = `${dep?.kind ?? 'file'} ${dep?.ref ?? file.path}${where ? ` (${where})` : ''}`;
    }
    groups.set(key, { label, kind: missingKindOf(key, dep?.kind), files: 1 });
  }
  const named = [...groups.values()].map((g) => (g.files > 1 ? `${g.label}, ${g.files} files` : g.label));
  if (included) {
    const root = commonRoot([project, ...outside.map((f) => dirname(f.path))]);
    const list = named.slice(0, LISTED_NAMES).join('; ') + (named.length > LISTED_NAMES ? `; and ${named.length - LISTED_NAMES} more` : '');
    const widened = root === project ? '' : `. The bundle root widened from ${project} to ${root}`;
    return [`--include-outside: sending ${outside.length} file(s) from outside the .blend's folder ${project}: ${list}${widened}`];
  }
  return [...groups.values()].map(
    (g, i) =>
      `left out ${named[i]}: it is outside the .blend's folder ${project}, so the render goes without it (${missingConsequence(g.kind)}); ` +
      'pass --include-outside to send it',
  );
}

/** Lays out the archive for `mainBlend` and its dependency files (absolute paths). */
export function planBundle(mainBlend: string, files: string[]): BundlePlan {
  const main = resolve(mainBlend);
  const unique = [...new Set([main, ...files.map((f) => resolve(f))])];
  const root = commonRoot([dirname(main), ...unique.map((f) => dirname(f))]);
  const entries = unique
    .map((source) => ({ source, name: relative(root, source).split(sep).join('/') }))
    .filter((e) => e.name !== '' && !e.name.startsWith('..') && !isAbsolute(e.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { root, mainBlend: relative(root, main).split(sep).join('/'), entries };
}

function shouldCompress(name: string, head: Buffer): boolean {
  const ext = name.split('.').pop()!.toLowerCase();
  if (ext === 'blend') return head.subarray(0, 7).toString('latin1') === 'BLENDER'; // not already gzip/zstd
  return !STORED_EXTENSIONS.has(ext);
}

async function fileHead(path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of createReadStream(path, { start: 0, end: 15 })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Writes the archive of `plan` to `outPath`; returns its SHA-256 and size. `onBytes` reports the
 * source bytes read so far (for a progress bar).
 */
export async function writeBundle(
  plan: BundlePlan,
  outPath: string,
  onBytes?: (bytes: number) => void,
): Promise<{ sha256: string; size: number; sourceBytes: number }> {
  const zip = new yazl.ZipFile();
  let sourceBytes = 0;
  for (const entry of plan.entries) {
    const info = await stat(entry.source);
    const compress = shouldCompress(entry.name, await fileHead(entry.source));
    // Read lazily, one file at a time, counting bytes as they go into the archive.
    const source = entry.source;
    zip.addReadStreamLazy(
      entry.name,
      { mtime: FIXED_MTIME, mode: 0o100644, compress, size: info.size },
      (cb: (err: Error | null, stream: NodeJS.ReadableStream) => void) => {
        const counted = createReadStream(source).pipe(
          new Transform({
            transform(chunk: Buffer, _encoding, done) {
              sourceBytes += chunk.length;
              onBytes?.(sourceBytes);
              done(null, chunk);
            },
          }),
        );
        cb(null, counted);
      },
    );
  }
  // A source that fails or changes size while read fails the whole archive.
  zip.once('error', (err: Error) => (zip.outputStream as Readable).destroy(err));
  zip.end();
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    zip.outputStream,
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    }),
    createWriteStream(outPath),
  );
  return { sha256: hash.digest('hex'), size, sourceBytes };
}

/** Hex SHA-256 of a file, streamed. */
export async function sha256OfFile(path: string, onBytes?: (bytes: number) => void): Promise<string> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
    onBytes?.(bytes);
  }
  return hash.digest('hex');
}
