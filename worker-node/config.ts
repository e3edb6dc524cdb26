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
import { DEFAULT_CACHE_BYTES, parseCacheSize } from './project-files.ts';

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

export const GPU_SLOTS_MODES = ['per-gpu', 'single'] as const;
export type GpuSlotsMode = (typeof GPU_SLOTS_MODES)[number];

/** A hot Blender is restarted after this many frames unless --hot-max-frames says otherwise. */
export const DEFAULT_HOT_MAX_FRAMES = 500;
/** ...and once it holds more than this share of the machine's memory after a task. */
export const DEFAULT_HOT_MAX_MEM_SHARE = 0.5;

export class ConfigError extends Error {}

export const USAGE = `Usage: npm run worker -- --master URL [options]

  --master URL      the master's URL (env FARM_MASTER_URL)              [required]
  --name NAME       this node's name (env FARM_NODE_NAME)               [default: hostname]
  --work-dir DIR    cache, renders and identity (env FARM_WORK_DIR)     [default: ./.farm/node-NAME]
  --threads N       Blender render threads, 0 = all cores (env FARM_THREADS) [default: 0]
  --blender PATH    the Blender executable (env BLENDER)                [default: blender on PATH]
  --token TOKEN     node enrolment token (env FARM_NODE_TOKEN)
  --grace-ms MS     on SIGTERM, how long the current task may finish     [default: 20000]
  --no-hot          one Blender process per task instead of one per job (env FARM_NO_HOT=1)
  --hot-max-frames N   restart the hot Blender after N frames, 0 = never (env FARM_HOT_MAX_FRAMES) [default: 500]
  --hot-max-mem-mb MB  restart it when it holds more than MB after a task, 0 = never (env FARM_HOT_MAX_MEM_MB) [default: half the RAM]
  --tags a,b        tags this node carries, for jobs that ask for them (env FARM_NODE_TAGS)
  --cache-size SIZE  most the cache of project files keeps, e.g. 50G; least recently used out first
                    (env FARM_CACHE_SIZE)                               [default: 20G]
  --gpu-slots MODE  per-gpu: one render slot per GPU, each its own node; single: one slot for all GPUs
                    (env FARM_GPU_SLOTS)                                [default: per-gpu]
  --help            this text`;

/** The ffmpeg a node runs, for frame previews and preview videos alike: `FFMPEG`, else `ffmpeg` on PATH. */
export function ffmpegCommand(env: NodeJS.ProcessEnv = process.env): string {
  return env.FFMPEG || 'ffmpeg';
}

/** Finds an executable the way a shell would: a path as given, or a name searched on PATH. */
export function findExecutable(name: string, pathEnv = process.env.PATH ?? ''): string | null {
  const candidates = name.includes('/') ? [resolve(name)] : pathEnv.split(delimiter).filter(Boolean).map((dir) => join(dir, name));
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
export async function blenderVersion(blender: string): Promise<string> {
  const { stdout } = await promisify(execFile)(blender, ['-b', '--factory-startup', '--version'], { timeout: 60_000 });
  const match = /Blender (\d+\.\d+(?:\.\d+)?)/.exec(stdout);
  if (!match) throw new ConfigError(`${blender} --version printed no Blender version: is it Blender?`);
  return match[1]!;
}

function intOption(value: string | undefined, flag: string, fallback: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new ConfigError(`${flag} must be a whole number from 0 to ${max} (got "${value}")`);
  return n;
}

/** Parses argv and the environment; throws ConfigError with a message meant for the operator. */
export async function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<NodeConfig | 'help'> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        master: { type: 'string' },
        name: { type: 'string' },
        'work-dir': { type: 'string' },
        threads: { type: 'string' },
        blender: { type: 'string' },
        token: { type: 'string' },
        'grace-ms': { type: 'string' },
        'no-hot': { type: 'boolean' },
        'hot-max-frames': { type: 'string' },
        'hot-max-mem-mb': { type: 'string' },
        tags: { type: 'string' },
        'gpu-slots': { type: 'string' },
        'cache-size': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${USAGE}`);
  }
  if (values.help) return 'help';

  const masterUrl = (values.master as string | undefined) ?? env.FARM_MASTER_URL;
  if (!masterUrl) throw new ConfigError(`no master URL: pass --master http://host:8000 or set FARM_MASTER_URL\n\n${USAGE}`);
  let url: URL;
  try {
    url = new URL(masterUrl);
  } catch {
    throw new ConfigError(`--master "${masterUrl}" is not a URL (expected e.g. http://localhost:8000)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`--master must be an http(s) URL, got ${url.protocol}`);

  const name = ((values.name as string | undefined) ?? env.FARM_NODE_NAME ?? hostname()).trim();
  if (!/^[\w.@-]{1,100}$/.test(name)) throw new ConfigError(`--name "${name}" may only use letters, digits, ".", "_", "@" and "-" (1-100 characters)`);
  const workDirRaw = (values['work-dir'] as string | undefined) ?? env.FARM_WORK_DIR ?? join('.farm', `node-${name}`);
  const workDir = isAbsolute(workDirRaw) ? workDirRaw : resolve(workDirRaw);
  const threads = intOption((values.threads as string | undefined) ?? env.FARM_THREADS, '--threads', 0, cpus().length * 4 || 1024);
  const graceMs = intOption(values['grace-ms'] as string | undefined, '--grace-ms', 20_000, 3_600_000);
  const hot = !(values['no-hot'] === true || env.FARM_NO_HOT === '1' || env.FARM_NO_HOT === 'true');
  const hotMaxFrames = intOption((values['hot-max-frames'] as string | undefined) ?? env.FARM_HOT_MAX_FRAMES, '--hot-max-frames', DEFAULT_HOT_MAX_FRAMES, 10_000_000);
  const hotMaxMemMb = intOption(
    (values['hot-max-mem-mb'] as string | undefined) ?? env.FARM_HOT_MAX_MEM_MB,
    '--hot-max-mem-mb',
    Math.round((totalmem() / 2 ** 20) * DEFAULT_HOT_MAX_MEM_SHARE),
    100_000_000,
  );

  const tags = parseTags((values.tags as string | undefined) ?? env.FARM_NODE_TAGS);
  const gpuSlots = ((values['gpu-slots'] as string | undefined) ?? env.FARM_GPU_SLOTS ?? 'per-gpu').trim().toLowerCase();
  if (!(GPU_SLOTS_MODES as readonly string[]).includes(gpuSlots)) {
    throw new ConfigError(`--gpu-slots must be ${GPU_SLOTS_MODES.join(' or ')} (got "${gpuSlots}")`);
  }

  const requested = (values.blender as string | undefined) ?? env.BLENDER;
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
  const cacheSizeRaw = (values['cache-size'] as string | undefined) ?? env.FARM_CACHE_SIZE;
  const cacheBytes = cacheSizeRaw === undefined ? DEFAULT_CACHE_BYTES : parseCacheSize(cacheSizeRaw);
  if (cacheBytes === null) throw new ConfigError(`--cache-size "${cacheSizeRaw}" is not a size (e.g. 50G, 500M or a number of bytes)`);

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
    token: (values.token as string | undefined) ?? env.FARM_NODE_TOKEN,
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
export function parseTags(value: string | undefined): string[] {
  const list = [...new Set((value ?? '').split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== ''))];
  const parsed = tagsSchema('--tags').safeParse(list);
  if (!parsed.success) throw new ConfigError(`${parsed.error.issues[0]?.message ?? 'invalid tags'} (got "${value}")`);
  return parsed.data;
}
