/**
 * `farm status JOB` (once) and `farm watch JOB` (until the job ends, with a progress bar, the
 * frames done, rendering and failed, and an ETA from measured frame times).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import { FarmApiError, type FarmClient } from '../../protocol/client.ts';
import type { JobStatusResponse } from '../../protocol/schemas.ts';
import { action, clientFor, printJson, resolveJobId } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { describeStatus, EtaEstimator, formatDuration, formatPercent } from '../format.ts';

const FINISHED = new Set(['completed', 'failed', 'canceled']);

export interface WatchOptions {
  json?: boolean;
  interval: number;
  progress: boolean;
}

/** One line about a job, for logs and pipes. */
function statusLine(job: JobStatusResponse, eta: number | null): string {
  return (
    `${job.status} ${formatPercent(job.progress)} ${job.completed_frames}/${job.total_frames} frames ` +
    `(${job.running_frames} rendering, ${job.failed_frames} failed) ETA ${formatDuration(eta)}`
  );
}

/** Whether an error while watching is worth waiting out (the master restarting, a rate limit). */
const transient = (err: unknown) => err instanceof FarmApiError && err.retryable;

/**
 * Polls the job until it is completed, failed or canceled and returns the last status.
 * `onStatus` sees every status fetched with the ETA estimate.
 */
export async function watchJob(
  client: FarmClient,
  jobId: string,
  intervalMs: number,
  onStatus: (job: JobStatusResponse, eta: number | null) => void,
  signal?: AbortSignal,
): Promise<JobStatusResponse> {
  const eta = new EtaEstimator();
  for (;;) {
    let job: JobStatusResponse | null = null;
    try {
      job = await client.jobStatus(jobId);
    } catch (err) {
      if (!transient(err)) throw err;
      process.stderr.write(`farm watch: ${(err as Error).message}; still watching\n`);
    }
    if (job) {
      onStatus(job, eta.add(job));
      if (FINISHED.has(job.status)) return job;
    }
    try {
      await sleep(intervalMs, undefined, { signal });
    } catch {
      throw new WatchInterrupted();
    }
  }
}

class WatchInterrupted extends Error {}

const seconds = (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0.2 || n > 3600) throw new InvalidArgumentError('--interval must be a number of seconds from 0.2 to 3600.');
  return n;
};

export function register(program: Command): void {
  program
    .command('status')
    .description("show a job's progress, frame counts, ETA and errors")
    .argument('<job>', 'job id (or its first characters)')
    .option('--json', 'print the job_status answer as JSON')
    .action(
      action('status', async (jobArg: string, options: { json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const job = await client.jobStatus(await resolveJobId(client, jobArg));
        if (options.json) printJson(job);
        else process.stdout.write(`${describeStatus(job)}\n`);
      }),
    );

  program
    .command('watch')
    .description('follow a job until it is completed, failed or canceled; exits 0 only when it completed')
    .argument('<job>', 'job id (or its first characters)')
    .option('--interval <seconds>', 'how often to ask the master', seconds, 2)
    .option('--json', 'print each new status as one JSON line (NDJSON)')
    .option('--no-progress', 'one line per change instead of a progress bar')
    .action(
      action('watch', async (jobArg: string, options: WatchOptions, command: Command) => {
        const client = clientFor(command);
        const jobId = await resolveJobId(client, jobArg);
        const abort = new AbortController();
        const onSignal = () => abort.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);

        const useBar = !options.json && options.progress && Boolean(process.stderr.isTTY);
        let progressBar: cliProgress.SingleBar | null = null;
        let lastLine = '';
        const startedAt = Date.now();
        try {
          const final = await watchJob(
            client,
            jobId,
            options.interval * 1000,
            (job, eta) => {
              if (options.json) {
                const line = JSON.stringify({ ...job, eta_seconds: eta });
                if (line !== lastLine) process.stdout.write(`${line}\n`);
                lastLine = line;
              } else if (useBar) {
                const payload = {
                  frames: `${job.completed_frames}/${job.total_frames}`,
                  running: job.running_frames,
                  failed: job.failed_frames,
                  eta: formatDuration(eta),
                  status: job.status,
                };
                if (!progressBar) {
                  progressBar = new cliProgress.SingleBar(
                    {
                      stream: process.stderr,
                      format: `${job.name} |{bar}| {percentage}% {frames} frames, {running} rendering, {failed} failed, ETA {eta} ({status})`,
                      hideCursor: true,
                    },
                    cliProgress.Presets.shades_classic,
                  );
                  progressBar.start(job.total_frames, job.completed_frames, payload);
                } else {
                  progressBar.update(job.completed_frames, payload);
                }
              } else {
                const line = statusLine(job, eta);
                if (line !== lastLine) process.stdout.write(`${line}\n`);
                lastLine = line;
              }
            },
            abort.signal,
          );
          (progressBar as cliProgress.SingleBar | null)?.stop();
          if (!options.json) {
            const took = formatDuration((Date.now() - startedAt) / 1000);
            process.stdout.write(`job ${final.name} ${final.status}: ${final.completed_frames}/${final.total_frames} frames (watched ${took})\n`);
            if (final.error) process.stdout.write(`error: ${final.error}\n`);
          }
          if (final.status === 'completed') return EXIT.ok;
          process.stderr.write(
            final.status === 'failed'
              ? `farm watch: job ${jobId} failed; see farm logs ${jobId} FRAME, and farm requeue ${jobId} to try its failed frames again\n`
              : `farm watch: job ${jobId} was canceled; farm resume ${jobId} starts it again\n`,
          );
          return EXIT.failed;
        } catch (err) {
          (progressBar as cliProgress.SingleBar | null)?.stop();
          if (err instanceof WatchInterrupted) {
            process.stderr.write(`farm watch: stopped watching; the job goes on (farm status ${jobId})\n`);
            return EXIT.interrupted;
          }
          throw err;
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      }),
    );
}
