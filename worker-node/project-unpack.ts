/**
 * Unpacking a project archive (a .zip with a .blend, its textures, caches and libraries) onto
 * the node's disk, refusing anything that could write outside the destination or fill the disk:
 *
 *  - entry names that are absolute (`/x`, `C:x`), go up (`..`), use backslashes as separators
 *    (read as `/`, then checked), or repeat another entry;
 *  - anything but regular files and folders: symbolic links (Unix mode S_IFLNK in the external
 *    attributes), devices, FIFOs; encrypted entries;
 *  - more than `maxFiles` entries or `maxBytes` in total, checked twice: first against the sizes the
 *    archive declares (before one byte is written), then against the bytes actually inflated, so
 *    an archive that lies about its sizes (a zip bomb) is stopped as soon as it exceeds them.
 *
 * The whole archive is checked before anything is written, then extracted into `destDir`, which
 * must not exist yet; on any error `destDir` is removed. The caller extracts into a temporary
 * folder and renames it into place, so a project folder in the cache is always complete.
 */
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import { projectPathConflict } from '../protocol/manifest.ts';
import { unsafeRelativePath } from '../protocol/schemas.ts';
import { wholeNumberSetting } from '../protocol/settings.ts';

export interface UnpackLimits {
  /** Most entries (files and folders) an archive may hold. */
  maxFiles: number;
  /** Most bytes all files together may hold once unpacked. */
  maxBytes: number;
}

const DEFAULT_UNPACK_LIMITS: UnpackLimits = { maxFiles: 50_000, maxBytes: 20 * 1024 ** 3 };

/** An archive refused as unsafe or over the limits: the task fails, the node is fine. */
export class UnsafeArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeArchiveError';
  }
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

function entryKind(entry: yauzl.Entry): 'file' | 'dir' | string {
  const mode = (entry.externalFileAttributes >>> 16) & 0xffff;
  const type = mode & S_IFMT;
  const isDirName = entry.fileName.endsWith('/');
  // Archives made on Windows carry no Unix mode: the name's trailing slash tells folders apart.
  if (type === 0) return isDirName ? 'dir' : 'file';
  if (type === S_IFLNK) return 'a symbolic link';
  if (type === S_IFDIR) return 'dir';
  if (type === S_IFREG) return isDirName ? 'a file whose name ends with "/"' : 'file';
  return `a special file (mode ${type.toString(8)})`;
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolveZip, reject) => {
    yauzl.open(path, { lazyEntries: true, autoClose: false, decodeStrings: true, validateEntrySizes: true, strictFileNames: false }, (err, zip) =>
      err ? reject(err) : resolveZip(zip),
    );
  });
}

/** Every central-directory entry, read without touching file data. */
function readEntries(zip: yauzl.ZipFile): Promise<yauzl.Entry[]> {
  return new Promise((resolveEntries, reject) => {
    const entries: yauzl.Entry[] = [];
    zip.on('entry', (entry: yauzl.Entry) => {
      entries.push(entry);
      zip.readEntry();
    });
    zip.once('end', () => resolveEntries(entries));
    zip.once('error', reject);
    zip.readEntry();
  });
}

function openEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<NodeJS.ReadableStream> {
  return new Promise((resolveStream, reject) => zip.openReadStream(entry, (err, stream) => (err ? reject(err) : resolveStream(stream))));
}

interface PlannedEntry {
  entry: yauzl.Entry;
  path: string;
  kind: 'file' | 'dir';
}

/** Checks every entry of the archive; returns what to extract or throws UnsafeArchiveError. */
function planExtraction(entries: yauzl.Entry[], limits: UnpackLimits): PlannedEntry[] {
  if (entries.length > limits.maxFiles) {
    throw new UnsafeArchiveError(`the archive has ${entries.length} entries, over the limit of ${limits.maxFiles}`);
  }
  const planned: PlannedEntry[] = [];
  let declaredBytes = 0;
  for (const entry of entries) {
    const name = entry.fileName.replace(/\/+$/, '');
    const problem = unsafeRelativePath(name);
    if (problem) throw new UnsafeArchiveError(`entry "${entry.fileName}" ${problem}`);
    const kind = entryKind(entry);
    if (kind !== 'file' && kind !== 'dir') throw new UnsafeArchiveError(`entry "${entry.fileName}" is ${kind}; only files and folders are allowed`);
    if (entry.isEncrypted()) throw new UnsafeArchiveError(`entry "${entry.fileName}" is encrypted`);
    if (kind === 'file' && !entry.canDecodeFileData()) {
      throw new UnsafeArchiveError(
        `entry "${entry.fileName}" uses compression method ${entry.compressionMethod}; only stored and deflated entries can be read`,
      );
    }
    declaredBytes += kind === 'file' ? entry.uncompressedSize : 0;
    if (declaredBytes > limits.maxBytes) {
      throw new UnsafeArchiveError(`the archive unpacks to more than ${limits.maxBytes} bytes (the limit), by the sizes it declares`);
    }
    planned.push({ entry, path: name, kind });
  }
  // One name twice, or a file where another entry needs a folder ("a" as a file and "a/b").
  const conflict = projectPathConflict(planned);
  if (conflict) throw new UnsafeArchiveError(`entry ${conflict}`);
  return planned;
}

/**
 * Unpacks the archive at `zipPath` into `destDir` (which must not exist) within `limits`.
 * Returns how many files and bytes were written.
 */
export async function unpackProject(zipPath: string, destDir: string, limits: UnpackLimits = DEFAULT_UNPACK_LIMITS): Promise<{ files: number; bytes: number }> {
  let zip: yauzl.ZipFile;
  try {
    zip = await openZip(zipPath);
  } catch (err) {
    throw new UnsafeArchiveError(`not a readable ZIP archive: ${(err as Error).message}`);
  }
  try {
    let entries: yauzl.Entry[];
    try {
      if (zip.entryCount > limits.maxFiles) {
        throw new UnsafeArchiveError(`the archive has ${zip.entryCount} entries, over the limit of ${limits.maxFiles}`);
      }
      entries = await readEntries(zip);
    } catch (err) {
      if (err instanceof UnsafeArchiveError) throw err;
      // yauzl refuses absolute and `..` names itself ("invalid relative path: ../x").
      throw new UnsafeArchiveError(`the archive has an unsafe or damaged entry: ${(err as Error).message}`);
    }
    const planned = planExtraction(entries, limits);

    const root = resolve(destDir);
    await mkdir(dirname(root), { recursive: true });
    await mkdir(root); // fails if it exists: never unpack over anything
    let files = 0;
    let bytes = 0;
    try {
      for (const { entry, path, kind } of planned) {
        const target = resolve(root, path);
        // Names were checked above; this is the last guard before the disk.
        if (!target.startsWith(root + sep)) throw new UnsafeArchiveError(`entry "${entry.fileName}" would land outside the project folder`);
        if (kind === 'dir') {
          await mkdir(target, { recursive: true });
          continue;
        }
        await mkdir(dirname(target), { recursive: true });
        let entryBytes = 0;
        const counter = new Transform({
          transform(chunk: Buffer, _encoding, done) {
            entryBytes += chunk.length;
            bytes += chunk.length;
            if (entryBytes > entry.uncompressedSize) {
              done(new UnsafeArchiveError(`entry "${entry.fileName}" inflates to more than the ${entry.uncompressedSize} bytes it declares`));
            } else if (bytes > limits.maxBytes) {
              done(new UnsafeArchiveError(`the archive unpacks to more than ${limits.maxBytes} bytes (the limit)`));
            } else {
              done(null, chunk);
            }
          },
        });
        try {
          // `wx`: never write through or over something that is already there.
          await pipeline(await openEntry(zip, entry), counter, createWriteStream(target, { flags: 'wx', mode: 0o644 }));
        } catch (err) {
          if (err instanceof UnsafeArchiveError) throw err;
          // yauzl's own check of the declared size (validateEntrySizes) can fire before ours.
          if (/too many bytes/.test((err as Error).message)) {
            throw new UnsafeArchiveError(`entry "${entry.fileName}" inflates to more than the ${entry.uncompressedSize} bytes it declares`);
          }
          throw new UnsafeArchiveError(`entry "${entry.fileName}" could not be unpacked: ${(err as Error).message}`);
        }
        files++;
      }
    } catch (err) {
      await rm(root, { recursive: true, force: true });
      throw err;
    }
    return { files, bytes };
  } finally {
    zip.close();
  }
}

/**
 * The .blend to render inside an unpacked project: `mainBlend` when given (it must be a regular
 * file in the project), else the only .blend at the top level (or at the top of the only folder,
 * for archives made by zipping a folder).
 */
export async function resolveMainBlend(projectDir: string, mainBlend: string | null): Promise<string> {
  const root = resolve(projectDir);
  if (mainBlend !== null) {
    const problem = unsafeRelativePath(mainBlend);
    if (problem) throw new UnsafeArchiveError(`main_blend "${mainBlend}" ${problem}`);
    const path = resolve(root, mainBlend);
    const info = await lstat(path).catch(() => null);
    if (!path.startsWith(root + sep) || !info?.isFile()) {
      const found = await topLevelBlends(root);
      throw new UnsafeArchiveError(
        `main_blend "${mainBlend}" is not a file in the project archive (its top-level .blend files: ${found.join(', ') || 'none'})`,
      );
    }
    return path;
  }
  let dir = root;
  let blends = await topLevelBlends(dir);
  if (blends.length === 0) {
    const items = await readdir(dir, { withFileTypes: true });
    if (items.length === 1 && items[0]!.isDirectory()) {
      dir = join(dir, items[0]!.name);
      blends = await topLevelBlends(dir);
    }
  }
  if (blends.length === 1) return join(dir, blends[0]!);
  if (blends.length === 0)
    throw new UnsafeArchiveError('the project archive has no .blend file at its top level: name the one to render with main_blend (farm submit --main)');
  throw new UnsafeArchiveError(
    `the project archive has ${blends.length} .blend files at its top level (${blends.slice(0, 10).join(', ')}): name the one to render with main_blend (farm submit --main)`,
  );
}

async function topLevelBlends(dir: string): Promise<string[]> {
  const items = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return items
    .filter((d) => d.isFile() && /\.blend$/i.test(d.name))
    .map((d) => d.name)
    .sort();
}

/** Limits from FARM_PROJECT_MAX_FILES and FARM_PROJECT_MAX_BYTES, else the defaults; a bad value throws a SettingError. */
export function unpackLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): UnpackLimits {
  return {
    maxFiles: wholeNumberSetting('FARM_PROJECT_MAX_FILES', env.FARM_PROJECT_MAX_FILES, DEFAULT_UNPACK_LIMITS.maxFiles, { min: 1 }),
    maxBytes: wholeNumberSetting('FARM_PROJECT_MAX_BYTES', env.FARM_PROJECT_MAX_BYTES, DEFAULT_UNPACK_LIMITS.maxBytes, { min: 1 }),
  };
}
