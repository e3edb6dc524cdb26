/**
 * The node's configuration from flags and environment variables, validated at start so that a
 * misconfigured node says what is wrong and exits instead of failing every task later.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { hostname, cpus, totalmem } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { tagsSchema } from '../protocol/schemas.ts';
import { onOffSetting, SettingError, wholeNumberSetting } from '../protocol/settings.ts';
import { blenderArgs } from './blender/launch.ts';
import { DEFAULT_CACHE_BYTES, parseCacheSize } from './project-files.ts';
import { unpackLimitsFromEnv } from './project-unpack.ts';

export interface NodeConfig {
  masterUrl: string;
  name: string;
  workDir: string;
  /** Blender's -t: 0 lets Blender use every core. */
  threads: number;
  blender: string;
  blenderVersion: string;
  token: string | undefined;
  /** How long to wait for Blender to stop on shutdown before killing it. */
  graceMs: number;
  /** Long-poll wait per get_job call. */
  pollWaitMs: number;
  /** Render in one long-lived Blender per job (hot-blender.ts) rather than one process per task. */
  hot: boolean;
  /** Restart the hot Blender after this many frames; 0 = never. */
  hotMaxFrames: number;
  /** Restart the hot Blender once its resident memory after a task is above this (MB); 0 = never. */
  hotMaxMemMb: number;
  /** Lower-case tags this node carries: jobs with tags go only to nodes that carry all of them. */
  tags: string[];
  /** `per-gpu`: one render slot (a registered worker with its own Blender) per GPU; `single`: one for all. */
  gpuSlots: GpuSlotsMode;
  /** Most bytes the cache of project files keeps (`--cache-size`); DEFAULT_CACHE_BYTES if unset. */
  cacheBytes?: number;
}

const GPU_SLOTS_MODES = ['per-gpu', 'single'] as const;
type GpuSlotsMode = (typeof GPU_SLOTS_MODES)[number];

/** A hot Blender is restarted after this many frames unless --hot-max-frames says otherwise. */
const DEFAULT_HOT_MAX_FRAMES = 500;
/** ...and once it holds more than this share of the machine's memory after a task. */
const DEFAULT_HOT_MAX_MEM_SHARE = 0.5;

/** A setting the node cannot run with; the message says which and what to do. */
export class ConfigError extends SettingError {}

interface Setting {
  /** The flag's value placeholder; none for an on/off flag. */
  value?: string;
  /** The environment variable that sets it when the flag is not given. */
  env?: string;
  /** The default, as --help shows it. */
  fallback?: string;
  help: string;
}

/**
 * Every flag of the node (`--name`), and the variables that set what no flag does (by their
 * name): parseArgs reads its options from this table and --help (USAGE) is written from it, so
 * they cannot disagree. docs/render-nodes.md points at --help rather than copying it.
 */
export const SETTINGS = {
  '--master': { value: 'URL', env: 'FARM_MASTER_URL', help: "the master's URL (required)" },
  '--name': { value: 'NAME', env: 'FARM_NODE_NAME', fallback: 'the hostname', help: "this node's name, shown in the API" },
  '--work-dir': {
    value: 'DIR',
    env: 'FARM_WORK_DIR',
    fallback: '.farm/node-NAME',
    help: 'identity (worker.json, node-credential.json), the blend and file caches, renders, logs',
  },
  '--threads': { value: 'N', env: 'FARM_THREADS', fallback: '0', help: "Blender's -t: render threads, 0 = all cores" },
  '--blender': { value: 'PATH', env: 'BLENDER', fallback: 'blender on PATH', help: 'the Blender executable' },
  '--token': { value: 'TOKEN', env: 'FARM_NODE_TOKEN', help: "the master's enrolment token: used only to enrol; then the node uses its own credential" },
  '--grace-ms': { value: 'MS', fallback: '20000', help: 'on SIGTERM, how long the current task may finish' },
  '--cache-size': {
    value: 'SIZE',
    env: 'FARM_CACHE_SIZE',
    fallback: '20G',
    help: 'the most the file cache keeps, e.g. 50G or 500M; least recently used files go first',
  },
  '--no-hot': { env: 'FARM_NO_HOT', help: 'one Blender process per task instead of one hot Blender per job (the variable: true or 1)' },
  '--hot-max-frames': {
    value: 'N',
    env: 'FARM_HOT_MAX_FRAMES',
    fallback: String(DEFAULT_HOT_MAX_FRAMES),
    help: 'restart the hot Blender after N frames, 0 = never',
  },
  '--hot-max-mem-mb': {
    value: 'MB',
    env: 'FARM_HOT_MAX_MEM_MB',
    fallback: 'half the RAM',
    help: 'restart it before the next task once it holds more than MB after one, 0 = never',
  },
  '--tags': { value: 'a,b', env: 'FARM_NODE_TAGS', help: 'tags this node carries (lower case): a job with tags goes only to nodes carrying all of them' },
  '--gpu-slots': {
    value: 'MODE',
    env: 'FARM_GPU_SLOTS',
    fallback: 'per-gpu',
    help: 'per-gpu: one render slot per GPU, each registered as its own node NAME/gpuN; single: one slot that renders on every GPU',
  },
  '--help': { help: 'this text' },
  FARM_PROJECT_MAX_FILES: { fallback: '50000', help: 'the most entries a project archive (or files a manifest) may have' },
  FARM_PROJECT_MAX_BYTES: { fallback: '21474836480 (20 GiB)', help: 'the most bytes a project archive may unpack to (or a manifest may hold)' },
  FARM_PREVIEWS: {
    fallback: 'auto',
    help: 'frame previews for the dashboard: auto skips PNG frames at most 640 px wide, on makes one of every frame, off of none',
  },
  FFMPEG: { fallback: 'ffmpeg on PATH', help: 'the ffmpeg of frame previews and preview videos; without libx264 the node takes no video tasks' },
} satisfies Record<string, Setting>;

type Flag = Extract<keyof typeof SETTINGS, `--${string}`>;

/** One setting for --help: its flag (or variable), where else it comes from, its default, what it does. */
function describe([name, setting]: [string, Setting]): string[] {
  const head = [name, setting.value].filter(Boolean).join(' ');
  const notes = [setting.env && `env ${setting.env}`, setting.fallback && `default: ${setting.fallback}`].filter(Boolean);
  return [`  ${head}${notes.length > 0 ? `  (${notes.join('; ')})` : ''}`, `      ${setting.help}`];
}

const ENTRIES = Object.entries(SETTINGS as Record<string, Setting>);

/** --help, written from the table. */
export const USAGE = [
  'Usage: npm run worker -- --master URL [options]',
  '',
  ...ENTRIES.filter(([name]) => name.startsWith('--')).flatMap(describe),
  '',
  'Variables without a flag:',
  ...ENTRIES.filter(([name]) => !name.startsWith('--')).flatMap(describe),
].join('\n');

/** parseArgs' options, from the table. */
const FLAG_OPTIONS = Object.fromEntries(
  ENTRIES.filter(([name]) => name.startsWith('--')).map(([name, setting]) => [
    name.slice(2),
    { type: setting.value ? ('string' as const) : ('boolean' as const) },
  ]),
);

const PREVIEW_MODES = ['auto', 'on', 'off'] as const;

/** FARM_PREVIEWS: `auto` (the default) skips small PNG frames, `on` makes a preview of every frame, `off` of none. */
export function previewMode(env: NodeJS.ProcessEnv = process.env): (typeof PREVIEW_MODES)[number] {
  const value = (env.FARM_PREVIEWS ?? '').trim().toLowerCase() || 'auto';
  const mode = PREVIEW_MODES.find((m) => m === value);
  if (!mode) throw new ConfigError(`FARM_PREVIEWS must be ${PREVIEW_MODES.join(', ')} (got "${env.FARM_PREVIEWS}")`);
  return mode;
}

/** The ffmpeg a node runs, for frame previews and preview videos alike: `FFMPEG`, else `ffmpeg` on PATH. */
export function ffmpegCommand(env: NodeJS.ProcessEnv = process.env): string {
  return env.FFMPEG || 'ffmpeg';
}

/** Finds an executable the way a shell would: a path as given, or a name searched on PATH. */
export function findExecutable(name: string, pathEnv = process.env.PATH ?? ''): string | null {
  const candidates = name.includes('/')
    ? [resolve(name)]
    : pathEnv
        .split(delimiter)
        .filter(Boolean)
        .map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here; keep looking.
    }
  }
  return null;
}

/** Asks Blender for its version; doubles as a check that it starts at all. */
async function blenderVersion(blender: string): Promise<string> {
  const { stdout } = await promisify(execFile)(blender, blenderArgs(null, ['--version']), { timeout: 60_000 });
  const match = /Blender (\d+\.\d+(?:\.\d+)?)/.exec(stdout);
  if (!match) throw new ConfigError(`${blender} --version printed no Blender version: is it Blender?`);
  return match[1]!;
}

/** Parses argv and the environment; throws ConfigError with a message meant for the operator. */
export async function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<NodeConfig | 'help'> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: FLAG_OPTIONS, strict: true }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${USAGE}`);
  }
  if (values.help) return 'help';
  /** A setting's text: the flag's value, else its variable's. */
  const raw = (flag: Flag): string | undefined => {
    const value = values[flag.slice(2)];
    if (typeof value === 'string') return value;
    const variable = (SETTINGS[flag] as Setting).env;
    return variable === undefined ? undefined : env[variable];
  };
  /** Whole numbers from 0 to `max`, refused with the flag's name (and the variable's). */
  const wholeNumber = (flag: Flag, fallback: number, max: number) => {
    const variable = (SETTINGS[flag] as Setting).env;
    const name = typeof values[flag.slice(2)] === 'string' || variable === undefined ? flag : `${flag} (${variable})`;
    return wholeNumberSetting(name, raw(flag), fallback, { max });
  };

  const masterUrl = raw('--master');
  if (!masterUrl) throw new ConfigError(`no master URL: pass --master http://host:8000 or set FARM_MASTER_URL\n\n${USAGE}`);
  let url: URL;
  try {
    url = new URL(masterUrl);
  } catch {
    throw new ConfigError(`--master "${masterUrl}" is not a URL (expected e.g. http://localhost:8000)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`--master must be an http(s) URL, got ${url.protocol}`);

  const name = (raw('--name') ?? hostname()).trim();
  if (!/^[\w.@-]{1,100}$/.test(name)) throw new ConfigError(`--name "${name}" may only use letters, digits, ".", "_", "@" and "-" (1-100 characters)`);
  const workDirRaw = raw('--work-dir') ?? join('.farm', `node-${name}`);
  const workDir = isAbsolute(workDirRaw) ? workDirRaw : resolve(workDirRaw);
  const threads = wholeNumber('--threads', 0, cpus().length * 4 || 1024);
  const graceMs = wholeNumber('--grace-ms', 20_000, 3_600_000);
  const hot = !(values['no-hot'] === true || onOffSetting('FARM_NO_HOT', env.FARM_NO_HOT, false));
  const hotMaxFrames = wholeNumber('--hot-max-frames', DEFAULT_HOT_MAX_FRAMES, 10_000_000);
  const hotMaxMemMb = wholeNumber('--hot-max-mem-mb', Math.round((totalmem() / 2 ** 20) * DEFAULT_HOT_MAX_MEM_SHARE), 100_000_000);

  const tags = parseTags(raw('--tags'));
  const gpuSlots = (raw('--gpu-slots') ?? 'per-gpu').trim().toLowerCase();
  if (!(GPU_SLOTS_MODES as readonly string[]).includes(gpuSlots)) {
    throw new ConfigError(`--gpu-slots must be ${GPU_SLOTS_MODES.join(' or ')} (got "${gpuSlots}")`);
  }

  const requested = raw('--blender');
  const blender = findExecutable(requested ?? 'blender', env.PATH);
  if (!blender) {
    const where = requested
      ? `"${requested}" (from ${values.blender ? '--blender' : 'BLENDER'}) is not an executable file`
      : `no "blender" on PATH (${env.PATH ?? ''}) and neither --blender nor BLENDER is set`;
    throw new ConfigError(
      `Blender not found: ${where}.\nInstall it (Debian/Ubuntu: sudo apt-get install blender; others: https://www.blender.org/download/) ` +
        `or point the node at it with --blender /path/to/blender or BLENDER=/path/to/blender.`,
    );
  }
  const cacheSizeRaw = raw('--cache-size');
  const cacheBytes = cacheSizeRaw === undefined ? DEFAULT_CACHE_BYTES : parseCacheSize(cacheSizeRaw);
  if (cacheBytes === null) throw new ConfigError(`--cache-size "${cacheSizeRaw}" is not a size (e.g. 50G, 500M or a number of bytes)`);

  // Read where they are used, and here too, so that a bad value stops the node at start.
  unpackLimitsFromEnv(env);
  previewMode(env);

  let version: string;
  try {
    version = await blenderVersion(blender);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${blender} did not start: ${(err as Error).message.split('\n')[0]}`);
  }
  return {
    masterUrl: url.toString().replace(/\/+$/, ''),
    name,
    workDir,
    threads,
    blender,
    blenderVersion: version,
    token: raw('--token'),
    graceMs,
    pollWaitMs: 20_000,
    hot,
    hotMaxFrames,
    hotMaxMemMb,
    tags,
    gpuSlots: gpuSlots as GpuSlotsMode,
    cacheBytes,
  };
}

/**
 * `--tags "GPU, big-mem"` as ['gpu', 'big-mem']: comma-separated, trimmed, lower case (tags are
 * compared as written, and a job's tags are lower case too), each checked by the protocol's rule.
 */
function parseTags(value: string | undefined): string[] {
  const list = [
    ...new Set(
      (value ?? '')
        .split(',')
        .map((t) => t.trim().toLowerCase())
        .filter((t) => t !== ''),
    ),
  ];
  const parsed = tagsSchema('--tags').safeParse(list);
  if (!parsed.success) throw new ConfigError(`${parsed.error.issues[0]?.message ?? 'invalid tags'} (got "${value}")`);
  return parsed.data;
}
