/**
 * `farm download JOB [DIR]`: the job's frames into DIR, each checked against the SHA-256 the
 * master recorded when the node uploaded it. Resumable: a frame already in DIR with the right
 * hash is skipped, so running the command again fetches only what is missing or damaged (also
 * while the job still renders). Frames go to `NAME.part` and are renamed only once verified.
 * `--zip` fetches one ZIP of every frame instead (streamed by the master; not resumable).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import yauzl from 'yauzl';
import type { FrameListItem } from '../../protocol/api.ts';
import { FarmApiError, type FarmClient, type Response } from '../../protocol/client.ts';
import { header } from '../../protocol/http-client.ts';
import { HEADER_SHA256 } from '../../protocol/schemas.ts';
import { action, clientFor, printJson, resolveJobId } from '../context.ts';
import { EXIT, IntegrityError } from '../exit-codes.ts';

export interface DownloadOptions {
  zip?: boolean;
  parallel: number;
  json?: boolean;
  progress: boolean;
}

export type FrameOutcome = 'downloaded' | 'skipped' | 'mismatch' | 'error';

export interface DownloadReport {
  job_id: string;
  status: string;
  dir: string;
  total_frames: number;
  downloaded: number;
  skipped: number;
  failed: number;
  frames: { frame: number; file: string; sha256: string; outcome: FrameOutcome; error?: string }[];
}

/** Hex SHA-256 of a file, or null when there is no file. */
async function fileSha256(path: string): Promise<string | null> {
  const info = await stat(path).catch(() => null);
  if (!info?.isFile()) return null;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Streams an answer's body to `path`, hashing it on the way; answers the hex SHA-256. */
async function saveBody(response: Response, path: string): Promise<string> {
  const hash = createHash('sha256');
  const hasher = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(response.body, hasher, createWriteStream(path));
  return hash.digest('hex');
}

/** A frame file name from the master, refused if it could leave DIR. */
function safeName(frame: FrameListItem): string {
  if (!/^[\w.-]{1,200}$/.test(frame.file_name) || frame.file_name.startsWith('.')) {
    throw new Error(`the master named frame ${frame.frame} "${frame.file_name}", which is not a plain file name`);
  }
  return frame.file_name;
}

/** Fetches one frame into `dir` unless a verified copy is there; retries transient failures. */
async function fetchFrame(client: FarmClient, jobId: string, dir: string, frame: FrameListItem): Promise<{ outcome: FrameOutcome; error?: string }> {
  const path = join(dir, safeName(frame));
  if ((await fileSha256(path)) === frame.sha256) return { outcome: 'skipped' };
  const part = `${path}.part`;
  let lastError = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const response = await client.frame(jobId, frame.frame);
      const got = await saveBody(response, part);
      const announced = header(response, HEADER_SHA256);
      if (got !== frame.sha256 || (announced && announced !== frame.sha256)) {
        lastError = `SHA-256 ${got} instead of ${frame.sha256}`;
        await rm(part, { force: true });
        continue;
      }
      await rename(part, path);
      return { outcome: 'downloaded' };
    } catch (err) {
      await rm(part, { force: true });
      if (err instanceof FarmApiError && !err.retryable) {
        return { outcome: 'error', error: err.message };
      }
      lastError = (err as Error).message;
    }
  }
  return { outcome: lastError.startsWith('SHA-256') ? 'mismatch' : 'error', error: lastError };
}

/** Downloads every stored frame of `jobId` into `dir` with `parallel` transfers at a time. */
export async function downloadFrames(
  client: FarmClient,
  jobId: string,
  dir: string,
  parallel: number,
  onFrame: (done: number, total: number) => void = () => {},
): Promise<DownloadReport> {
  const job = await client.jobStatus(jobId);
  await mkdir(dir, { recursive: true });
  const frames: FrameListItem[] = [];
  for await (const frame of client.allFrames(jobId)) frames.push(frame);
  const report: DownloadReport = {
    job_id: jobId,
    status: job.status,
    dir,
    total_frames: job.total_frames,
    downloaded: 0,
    skipped: 0,
    failed: 0,
    frames: [],
  };
  let next = 0;
  let done = 0;
  onFrame(0, frames.length);
  const worker = async () => {
    while (next < frames.length) {
      const frame = frames[next++]!;
      const result = await fetchFrame(client, jobId, dir, frame);
      if (result.outcome === 'downloaded') report.downloaded++;
      else if (result.outcome === 'skipped') report.skipped++;
      else report.failed++;
      report.frames.push({
        frame: frame.frame,
        file: frame.file_name,
        sha256: frame.sha256,
        outcome: result.outcome,
        ...(result.error ? { error: result.error } : {}),
      });
      onFrame(++done, frames.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, frames.length)) }, worker));
  report.frames.sort((a, b) => a.frame - b.frame);
  return report;
}

/** The entry names of a ZIP file. */
function zipEntryNames(path: string): Promise<string[]> {
  return new Promise((resolveNames, reject) => {
    yauzl.open(path, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error('cannot open the ZIP'));
      const names: string[] = [];
      zip.on('entry', (entry: yauzl.Entry) => {
        names.push(entry.fileName);
        zip.readEntry();
      });
      zip.on('end', () => resolveNames(names));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}

const defaultDir = (name: string, jobId: string) =>
  `${
    name
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^[._]+/, '')
      .slice(0, 60) || 'frames'
  }-${jobId.slice(0, 8)}`;

export function register(program: Command): void {
  program
    .command('download')
    .description("fetch a job's frames, verified by SHA-256; run it again to fetch only what is missing")
    .argument('<job>', 'job id (or its first characters)')
    .argument('[dir]', 'where to put the frames (default: ./NAME-ID)')
    .option('--zip', 'fetch one ZIP of every frame instead (not resumable)')
    .option(
      '--parallel <n>',
      'frames fetched at once (1-16)',
      (value: string) => {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1 || n > 16) throw new InvalidArgumentError('--parallel must be a whole number from 1 to 16.');
        return n;
      },
      4,
    )
    .option('--json', 'print what was fetched as JSON')
    .option('--no-progress', 'no progress bar')
    .action(
      action('download', async (jobArg: string, dirArg: string | undefined, options: DownloadOptions, command: Command) => {
        const client = clientFor(command);
        const jobId = await resolveJobId(client, jobArg);
        const job = await client.jobStatus(jobId);
        const dir = resolve(dirArg ?? defaultDir(job.name, jobId));

        if (options.zip) {
          await mkdir(dir, { recursive: true });
          const path = join(dir, `${defaultDir(job.name, jobId)}.zip`);
          const listed: string[] = [];
          for await (const frame of client.allFrames(jobId)) listed.push(frame.file_name);
          const response = await client.framesZip(jobId);
          const sha256 = await saveBody(response, `${path}.part`);
          const names = await zipEntryNames(`${path}.part`).catch(async (err: Error) => {
            await rm(`${path}.part`, { force: true });
            throw new IntegrityError(`the ZIP is damaged (${err.message}): run the command again`);
          });
          // Frames stored while the ZIP was being written may be in it too.
          const missing = listed.filter((name) => !names.includes(name));
          if (missing.length > 0) {
            await rm(`${path}.part`, { force: true });
            throw new IntegrityError(`the ZIP lacks ${missing.length} frame(s) (${missing.slice(0, 3).join(', ')}): run the command again`);
          }
          await rename(`${path}.part`, path);
          const { size } = await stat(path);
          if (options.json) printJson({ job_id: jobId, status: job.status, zip: path, size, sha256, entries: names.length });
          else process.stdout.write(`${names.length} frame(s) in ${path} (${size} bytes)\n`);
          return EXIT.ok;
        }

        const useBar = !options.json && options.progress && Boolean(process.stderr.isTTY);
        const bar = useBar
          ? new cliProgress.SingleBar(
              { stream: process.stderr, format: 'frames |{bar}| {value}/{total} {percentage}%', hideCursor: true },
              cliProgress.Presets.shades_classic,
            )
          : null;
        let started = false;
        const report = await downloadFrames(client, jobId, dir, options.parallel, (done, total) => {
          if (!bar) return;
          if (!started) bar.start(total, done);
          else bar.update(done);
          started = true;
        });
        bar?.stop();
        if (options.json) printJson(report);
        else {
          process.stdout.write(`${report.downloaded} downloaded, ${report.skipped} already there, ${report.failed} failed: ${dir}\n`);
          const stored = report.downloaded + report.skipped + report.failed;
          if (report.status !== 'completed' && stored < report.total_frames) {
            process.stdout.write(
              `the job is ${report.status} with ${stored} of ${report.total_frames} frames stored: run farm download again later for the rest\n`,
            );
          }
        }
        const mismatched = report.frames.filter((f) => f.outcome === 'mismatch');
        const errored = report.frames.filter((f) => f.outcome === 'error');
        if (mismatched.length > 0) {
          throw new IntegrityError(
            `${mismatched.length} frame(s) did not match their SHA-256 and were not kept (${mismatched
              .slice(0, 3)
              .map((f) => f.frame)
              .join(', ')}): run the command again`,
          );
        }
        if (errored.length > 0) {
          process.stderr.write(`farm download: ${errored.length} frame(s) could not be fetched (${errored[0]!.error}); run the command again\n`);
          return EXIT.unreachable;
        }
        return EXIT.ok;
      }),
    );
}
