/**
 * `farm submit FILE`: sends a .blend (with everything it needs) or a project .zip to the farm.
 *
 *  1. Asks Blender (headless, `--disable-autoexec`) which files the .blend needs: textures with
 *     UDIM tiles, linked libraries (recursively), sounds, caches. Missing ones are warnings.
 *  2. A .blend that needs nothing else is uploaded as it is; otherwise the project's files, at
 *     their paths relative to a common root (cli/bundle.ts), are sent file by file as a manifest
 *     (cli/project-upload.ts), or with --zip bundled into one .zip. Files outside the .blend's
 *     folder (through `..` or a symbolic link) are left out with a warning, unless --include-outside.
 *  3. Files are uploaded with the chunked API by SHA-256 (cli/upload/blob-upload.ts): what the
 *     master already has is not sent again (for a manifest, file by file: a resubmission after a
 *     tweak sends only what changed), and an interrupted upload resumes where it stopped.
 *  4. `POST /jobs` creates the job, with the warnings attached.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { countFrames, formatFrameList, isPlainRange, parseFrameList, type FrameRange } from '../../protocol/frame-list.ts';
import {
  DEVICE_REQUIREMENTS,
  FRAME_ORDERS,
  MAX_PREVIEW_VIDEO_FRAMES,
  MAX_TILES,
  tagsSchema,
  unsafeRelativePath,
  webhookUrlSchema,
  type CreateJobBody,
  type DeviceRequirement,
  type FrameOrder,
  type InputKind,
  type SubmitJobResponse,
} from '../../protocol/schemas.ts';
import { outsideWarnings, planBundle, sha256OfFile, splitByProject, writeBundle, type BundlePlan } from '../bundle.ts';
import { uploadProject } from '../project-upload.ts';
import { dependencyWarnings, listDependencies, type DependencyReport } from '../deps/list-deps.ts';
import type { HttpClient } from '../../protocol/http-client.ts';
import { action, clientFor } from '../context.ts';
import { EXIT, UsageError } from '../exit-codes.ts';
import { uploadBlob, type UploadResult } from '../upload/blob-upload.ts';
import { createProgress, formatBytes } from '../upload/progress.ts';

export interface SubmitOptions {
  frames?: string;
  chunkSize?: number;
  order?: FrameOrder;
  priority?: number;
  name?: string;
  maxAttempts?: number;
  maxNodeLosses?: number;
  main?: string;
  blender: string;
  deps: boolean;
  /** Send files outside the .blend's folder too, widening the bundle root. */
  includeOutside?: boolean;
  /** Send a project as one .zip rather than file by file. */
  zip?: boolean;
  strict?: boolean;
  dryRun?: boolean;
  parallel: number;
  bundleDir?: string;
  json?: boolean;
  progress: boolean;
  device?: DeviceRequirement;
  tags?: string[];
  tiles?: number;
  /** On unless --no-preview-video; made only for jobs of 2 or more frames. */
  previewVideo: boolean;
  webhook?: string;
}

/** What `farm submit --json` prints. */
export interface SubmitResult extends SubmitJobResponse {
  blob_sha256: string;
  kind: InputKind;
  main_blend: string | null;
  size: number;
  uploaded_bytes: number;
  skipped_bytes: number;
  files: number;
  warnings: string[];
}

/** A frame list ("1-250", "7", "1-100x5", "1,5,10-20", see protocol/frame-list.ts) -> its ranges; a bad one is a UsageError. */
export function parseFrames(text: string): FrameRange[] {
  try {
    return parseFrameList(text);
  } catch (err) {
    throw new UsageError(`--frames: ${(err as Error).message}`);
  }
}

/** The scene's frames: its range, every `frame_step`th frame (the scene's Frame Step). */
function sceneFrames(scene: DependencyReport['scene']): FrameRange[] {
  return parseFrameList(`${scene.frame_start}-${Math.max(scene.frame_start, scene.frame_end)}x${Math.max(1, scene.frame_step ?? 1)}`);
}

/** The job's frames as `POST /jobs` takes them: the seed's start and end for a plain range, else a frame list. */
function framesBody(ranges: FrameRange[]): { start_frame: number; end_frame: number } | { frames: string } {
  return isPlainRange(ranges) ? { start_frame: ranges[0]![0], end_frame: ranges[0]![1] } : { frames: formatFrameList(ranges) };
}

const wholeNumber = (flag: string, min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be a whole number from ${min} to ${max}.`);
  return n;
};

/** Parses a flag's value with a protocol schema, so the CLI refuses what the master would. */
const bySchema =
  <T>(flag: string, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { message: string }[] } } }) =>
  (value: string): T => {
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new InvalidArgumentError(`${flag}: ${parsed.error.issues[0]?.message ?? 'not valid'}.`);
    return parsed.data;
  };

function say(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Runs `farm submit` for `file`; returns what it printed with --json. */
export async function submit(file: string, options: SubmitOptions, client: HttpClient, signal: AbortSignal): Promise<SubmitResult> {
  const path = resolve(file);
  const info = await stat(path).catch(() => null);
  if (!info?.isFile()) throw new UsageError(`${file} is not a file`);
  const isZip = /\.zip$/i.test(path);
  if (!isZip && !/\.blend\d*$/i.test(path)) throw new UsageError(`${file} is neither a .blend nor a .zip project`);
  if (options.main !== undefined) {
    if (!isZip) throw new UsageError('--main is for a .zip project (it names the .blend to render inside it)');
    const problem = unsafeRelativePath(options.main);
    if (problem) throw new UsageError(`--main ${options.main} ${problem}`);
  }

  // 1. What the .blend needs.
  let report: DependencyReport | null = null;
  let warnings: string[] = [];
  /** The dependency files that go into the bundle. */
  let bundled: string[] = [];
  if (!isZip && options.deps) {
    say(`asking Blender for the files ${basename(path)} needs…`);
    report = await listDependencies(path, options.blender);
    const here = (p: string) => relative(process.cwd(), p) || p;
    const project = await splitByProject(
      path,
      report.files.map((f) => f.path),
    );
    bundled = options.includeOutside ? [...project.inside, ...project.outside.map((f) => f.path)] : project.inside;
    warnings = [...dependencyWarnings(report, here), ...outsideWarnings(path, project.outside, report.files, options.includeOutside ?? false)];
    say(
      `${report.files.length} file(s) besides the .blend (Blender ${report.blender_version}, scene "${report.scene.name}", frames ${report.scene.frame_start}-${report.scene.frame_end})`,
    );
    for (const warning of warnings) say(`warning: ${warning}`);
    const leftOut = options.includeOutside ? 0 : project.outside.length;
    const unsendable = report.missing.length + report.unportable.length + leftOut;
    if (options.strict && unsendable > 0) {
      throw new UsageError(`--strict: ${unsendable} dependenc(ies) cannot be sent; fix them or submit without --strict`);
    }
  }
  let frames: FrameRange[];
  if (options.frames !== undefined) frames = parseFrames(options.frames);
  else if (report) frames = sceneFrames(report.scene);
  else throw new UsageError('--frames is required when Blender is not asked for the scene (--no-deps, or a .zip)');

  // 2. What to upload: the .blend alone, a bundle, or the user's own zip.
  let uploadPath = path;
  let kind: InputKind = isZip ? 'zip' : 'blend';
  let mainBlend: string | null = isZip ? (options.main ?? null) : null;
  let fileCount = 1;
  let tempDir: string | null = null;
  try {
    let projectPlan: BundlePlan | null = null;
    if (bundled.length > 0) {
      const plan = planBundle(path, bundled);
      fileCount = plan.entries.length;
      kind = options.zip ? 'zip' : 'manifest';
      mainBlend = plan.mainBlend;
      say(`bundle: ${plan.entries.length} files under ${plan.root}, main .blend ${plan.mainBlend}`);
      if (options.dryRun) {
        for (const entry of plan.entries) say(`  ${entry.name}`);
      } else if (kind === 'manifest') {
        projectPlan = plan;
      } else {
        tempDir = await mkdtemp(join(options.bundleDir ?? tmpdir(), 'farm-bundle-'));
        uploadPath = join(tempDir, 'project.zip');
        let sourceTotal = 0;
        for (const entry of plan.entries) sourceTotal += (await stat(entry.source)).size;
        const packing = createProgress('bundling', sourceTotal, options.progress);
        const written = await writeBundle(plan, uploadPath, (bytes) => packing.update(bytes, bytes));
        packing.stop();
        say(`bundle: ${formatBytes(written.size)} (from ${formatBytes(written.sourceBytes)})`);
      }
    }
    if (options.dryRun) {
      return {
        job_id: '',
        status: 'queued',
        total_frames: countFrames(frames),
        blend_file: '',
        blob_sha256: '',
        kind,
        main_blend: mainBlend,
        size: 0,
        uploaded_bytes: 0,
        skipped_bytes: 0,
        files: fileCount,
        warnings,
      };
    }

    // 3. Upload by hash: a project file by file, else the one file.
    if (projectPlan) {
      const sent = await uploadProject({ client, plan: projectPlan, parallel: options.parallel, signal, progress: options.progress, say });
      const job = await createJob(jobBody(sent.manifestSha256, 'manifest', null));
      return {
        ...job,
        blob_sha256: sent.manifestSha256,
        kind,
        main_blend: mainBlend,
        size: sent.totalBytes,
        uploaded_bytes: sent.sentBytes,
        skipped_bytes: sent.totalBytes - sent.sentBytes,
        files: fileCount,
        warnings,
      };
    }
    const { size } = await stat(uploadPath);
    const hashing = createProgress('hashing', size, options.progress && kind === 'blend');
    const sha256 = await sha256OfFile(uploadPath, (bytes) => hashing.update(bytes, bytes));
    hashing.stop();
    let upload: UploadResult;
    const bar = createProgress('uploading', size, options.progress);
    try {
      upload = await uploadBlob({
        client,
        path: uploadPath,
        sha256,
        size,
        parallel: options.parallel,
        signal,
        onPlan: (state) => {
          if (state.parts_done.length > 0) say(`resuming: the master has ${state.parts_done.length} of ${state.part_count} parts already`);
        },
        onProgress: (p) => bar.update(p.doneBytes, p.sentBytes),
      });
    } finally {
      bar.stop();
    }
    say(
      upload.alreadyStored
        ? `the master already has this ${kind === 'zip' ? 'project' : '.blend'} (${sha256.slice(0, 12)}): nothing to upload`
        : `uploaded ${formatBytes(upload.sentBytes)}${upload.skippedBytes ? ` (${formatBytes(upload.skippedBytes)} were already there)` : ''}, SHA-256 ${sha256.slice(0, 12)} verified by the master`,
    );

    // 4. The job.
    const job = await createJob(jobBody(sha256, kind, mainBlend));
    return {
      ...job,
      blob_sha256: sha256,
      kind,
      main_blend: mainBlend,
      size,
      uploaded_bytes: upload.sentBytes,
      skipped_bytes: upload.skippedBytes,
      files: fileCount,
      warnings,
    };
  } finally {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  }

  /** Creates the job: not idempotent, so retried only after a 429 (a repeat could queue it twice). */
  function createJob(body: CreateJobBody): Promise<SubmitJobResponse> {
    return client.json<SubmitJobResponse>('POST', '/jobs', { json: body, signal });
  }

  /** `POST /jobs`' body for the uploaded input. */
  function jobBody(sha256: string, kind: InputKind, mainBlend: string | null): CreateJobBody {
    return {
      blob_sha256: sha256,
      kind,
      ...(kind === 'zip' && mainBlend !== null ? { main_blend: mainBlend } : {}),
      ...framesBody(frames),
      ...(options.chunkSize !== undefined ? { chunk_size: options.chunkSize } : {}),
      ...(options.order !== undefined ? { order: options.order } : {}),
      ...(options.priority !== undefined ? { priority: options.priority } : {}),
      name: options.name ?? basename(path).replace(/\.(blend\d*|zip)$/i, ''),
      ...(options.maxAttempts !== undefined ? { max_attempts: options.maxAttempts } : {}),
      ...(options.maxNodeLosses !== undefined ? { max_node_losses: options.maxNodeLosses } : {}),
      ...(warnings.length > 0 ? { warnings: warnings.slice(0, 200).map((w) => w.slice(0, 1000)) } : {}),
      ...(options.device !== undefined ? { device: options.device } : {}),
      ...(options.tags?.length ? { tags: options.tags } : {}),
      ...(options.tiles !== undefined ? { tiles: options.tiles } : {}),
      ...(wantsVideo(options, frames) ? { preview_video: true } : {}),
      ...(options.webhook !== undefined ? { webhook_url: options.webhook } : {}),
    };
  }
}

/** Adds `farm submit` to the program. */
export function register(program: Command): void {
  program
    .command('submit')
    .description('upload a .blend with its textures, libraries and caches (or a project .zip) and queue a render job')
    .argument('<file>', 'the .blend to render, or a .zip project')
    .option('--frames <list>', "frames to render, like 1-250, 7, 1-100x5 (every 5th) or 1,5,10-20 (default: the scene's range and frame step)")
    .option('--chunk-size <n>', 'frames per task (default: sized by the master)', wholeNumber('--chunk-size', 1, 10_000))
    .option(
      '--order <order>',
      'sequential (default), or progressive: first, last, middle frame, then halves, so the whole shot renders roughly first',
      (value: string) => {
        if (!(FRAME_ORDERS as readonly string[]).includes(value)) throw new InvalidArgumentError(`--order must be one of ${FRAME_ORDERS.join(', ')}.`);
        return value as FrameOrder;
      },
    )
    .option('--priority <n>', 'higher runs first, 0-100 (default 50)', wholeNumber('--priority', 0, 100))
    .option('--name <name>', 'job name (default: the file name)')
    .option('--max-attempts <n>', 'tries per task before the job fails (default 3)', wholeNumber('--max-attempts', 1, 20))
    .option('--max-node-losses <n>', 'times in a row a task may lose its node before the job fails (default 5)', wholeNumber('--max-node-losses', 1, 100))
    .option('--main <path>', 'for a .zip: the .blend to render, relative to the archive root (default: the only top-level .blend)')
    .option('--blender <path>', 'Blender used to list dependencies (env BLENDER)', process.env.BLENDER ?? 'blender')
    .option('--no-deps', 'upload the .blend alone, without asking Blender what it needs')
    .option('--include-outside', "also send files outside the .blend's folder (through .. or a symbolic link), widening the bundle root")
    .option('--zip', 'send a project as one .zip instead of file by file (a resubmission then sends it all again)')
    .option('--strict', 'stop before uploading when a dependency is missing, has an absolute path or is left out')
    .option('--dry-run', 'list what would be uploaded; upload nothing')
    .option('--parallel <n>', 'parts uploaded at once', wholeNumber('--parallel', 1, 16), 3)
    .option('--bundle-dir <dir>', 'where to write the temporary .zip bundle (default: the system temp folder)')
    .option('--device <device>', `what to render on: ${DEVICE_REQUIREMENTS.join(', ')} (default any)`, (value: string) => {
      if (!(DEVICE_REQUIREMENTS as readonly string[]).includes(value))
        throw new InvalidArgumentError(`--device must be one of ${DEVICE_REQUIREMENTS.join(', ')}.`);
      return value as DeviceRequirement;
    })
    .option('--tags <list>', 'only nodes carrying all these tags render it, like gpu-24g,studio-a', bySchema('--tags', tagsSchema('tags')))
    .option('--tiles <n>', `split a one-frame job into n tiles rendered by different nodes, 2-${MAX_TILES}`, wholeNumber('--tiles', 2, MAX_TILES))
    .option('--no-preview-video', 'do not make an H.264 preview of an animation')
    .option('--webhook <url>', 'POST to this URL when the job completes or fails', bySchema('--webhook', webhookUrlSchema))
    .option('--json', 'print the result as JSON on stdout')
    .option('--no-progress', 'no progress bar')
    .action(
      action('submit', async (file: string, options: SubmitOptions, command: Command) => {
        const client = clientFor(command);
        const abort = new AbortController();
        const onSignal = () => {
          if (abort.signal.aborted) process.exit(EXIT.interrupted);
          say('\ninterrupted: run the same command again to resume the upload where it stopped');
          abort.abort(new Error('interrupted'));
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        try {
          const result = await submit(file, options, client, abort.signal);
          if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
          else if (options.dryRun)
            process.stdout.write(`dry run: ${result.files} file(s) as ${result.kind}, frames ${result.total_frames}; nothing uploaded\n`);
          else
            process.stdout.write(
              `job ${result.job_id} queued: ${result.total_frames} frame(s)${result.warnings.length ? `, ${result.warnings.length} warning(s)` : ''}\n`,
            );
          return EXIT.ok;
        } catch (err) {
          if (abort.signal.aborted) return EXIT.interrupted;
          throw err;
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await client.destroy();
        }
      }),
    );
}

/** An animation gets its preview video unless asked not to (a still or a split still has none). */
function wantsVideo(options: SubmitOptions, frames: FrameRange[]): boolean {
  const count = countFrames(frames);
  return options.previewVideo && options.tiles === undefined && count >= 2 && count <= MAX_PREVIEW_VIDEO_FRAMES;
}
