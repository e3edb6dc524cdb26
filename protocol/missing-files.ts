/**
 * What a missing external file does to a render, by what the file is: the one rule behind the
 * render node's warnings (from Blender's `Path '…' not found` lines, which name only a path)
 * and `farm submit`'s (from Blender's own list of dependencies, which names the data-block).
 *
 * Blender renders on without the file in every case and exits 0, but the result differs: an
 * image comes out magenta, a cache is recomputed or left empty, a sound changes nothing.
 */

/** The kinds of external file a .blend names, as far as a missing one's effect goes. */
export type MissingKind = 'image' | 'movie' | 'library' | 'cache' | 'font' | 'sound' | 'volume' | 'file';

/** What Blender does without the file, as the second half of a warning. */
const CONSEQUENCE: Record<MissingKind, string> = {
  image: 'it renders magenta',
  movie: 'it renders magenta as a texture and as nothing in the sequencer',
  library: 'what the file links from it is left out of the render',
  cache: 'the simulation or animation it holds is recomputed, or left empty',
  font: "its text falls back to Blender's built-in font",
  sound: 'it is silent (no effect on the frames)',
  volume: 'it renders empty',
  file: 'what uses it renders without it',
};

/** File name extensions (lower case, no dot) by kind; a path with none is a folder. */
const EXTENSIONS: [MissingKind, string[]][] = [
  ['image', ['png', 'jpg', 'jpeg', 'tif', 'tiff', 'exr', 'hdr', 'tga', 'bmp', 'webp', 'jp2', 'j2c', 'dds', 'psd', 'cin', 'dpx', 'rgb', 'sgi', 'tx']],
  ['movie', ['mp4', 'mov', 'avi', 'mkv', 'webm', 'mpg', 'mpeg', 'm4v', 'ogv', 'flv', 'dv', 'wmv']],
  ['library', ['blend']],
  // Alembic and USD caches, point cache frames, mesh caches (MDD, PC2), fluid frames.
  ['cache', ['abc', 'usd', 'usda', 'usdc', 'usdz', 'bphys', 'mdd', 'pc2', 'uni', 'bobj']],
  ['font', ['ttf', 'otf', 'pfb', 'woff', 'woff2', 'ttc']],
  ['sound', ['wav', 'mp3', 'ogg', 'flac', 'aac', 'm4a', 'aif', 'aiff', 'opus', 'wma', 'ac3']],
  ['volume', ['vdb', 'nvdb']],
];

/** `kind` values of the CLI's dependency lister (cli/deps/list_deps.py) by kind. */
const LISTED_KINDS: Record<string, MissingKind> = {
  image: 'image',
  'udim tile': 'image',
  'image sequence': 'image',
  'sequencer image': 'image',
  movie: 'movie',
  'movie clip': 'movie',
  'sequencer movie': 'movie',
  library: 'library',
  'point cache': 'cache',
  'fluid cache': 'cache',
  'ocean cache': 'cache',
  'mesh cache': 'cache',
  'cache file': 'cache',
  font: 'font',
  sound: 'sound',
  volume: 'volume',
};

/**
 * What `path` is: from the data-block kind the dependency lister gave (`listedAs`) when it
 * knows one, otherwise from the path itself. A path that ends in a separator or has no
 * extension is a folder, and the folders a .blend names are caches (point cache, fluid, bake).
 */
export function missingKindOf(path: string, listedAs?: string): MissingKind {
  const listed = listedAs === undefined ? undefined : LISTED_KINDS[listedAs];
  if (listed) return listed;
  if (/[\\/]$/.test(path)) return 'cache';
  if (/<UDIM>|<UVTILE>/.test(path)) return 'image';
  const name = path.split(/[\\/]/).pop()!;
  const extension = /\.([a-z0-9]+)(?:\.gz)?$/i.exec(name)?.[1]?.toLowerCase();
  if (extension === undefined) return 'cache';
  return EXTENSIONS.find(([, list]) => list.includes(extension))?.[0] ?? 'file';
}

/** What happens to the render without a file of `kind` ("it renders magenta"). */
export function missingConsequence(kind: MissingKind): string {
  return CONSEQUENCE[kind];
}
