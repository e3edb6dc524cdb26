/** `farm list`: the newest jobs with their progress. */
import { InvalidArgumentError, type Command } from 'commander';
import { JOB_STATUSES, type JobStatus } from '../../protocol/schemas.ts';
import { action, clientFor, printJson } from '../context.ts';
import { formatAgo, formatDuration, formatPercent, table } from '../format.ts';

export function register(program: Command): void {
  program
    .command('list')
    .description('list jobs, newest first')
    .option('--status <status>', `only jobs in this state: ${JOB_STATUSES.join(', ')}`, (value: string) => {
      if (!(JOB_STATUSES as readonly string[]).includes(value)) throw new InvalidArgumentError(`--status must be one of ${JOB_STATUSES.join(', ')}.`);
      return value as JobStatus;
    })
    .option(
      '--limit <n>',
      'how many jobs (1-200)',
      (value: string) => {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1 || n > 200) throw new InvalidArgumentError('--limit must be a whole number from 1 to 200.');
        return n;
      },
      20,
    )
    .option('--json', 'print the jobs as JSON')
    .action(
      action('list', async (options: { status?: JobStatus; limit: number; json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const { jobs, next_cursor } = await client.listJobs({ limit: options.limit, status: options.status });
        if (options.json) {
          printJson({ jobs, next_cursor });
          return;
        }
        if (jobs.length === 0) {
          process.stdout.write(options.status ? `no ${options.status} jobs\n` : 'no jobs yet: submit one with farm submit scene.blend --frames 1-100\n');
          return;
        }
        process.stdout.write(
          `${table(
            ['ID', 'NAME', 'STATUS', 'PROGRESS', 'FRAMES', 'FAILED', 'ETA', 'PRIORITY', 'SUBMITTED'],
            jobs.map((job) => [
              job.job_id.slice(0, 8),
              job.name.length > 40 ? `${job.name.slice(0, 39)}…` : job.name,
              job.status,
              formatPercent(job.progress),
              `${job.completed_frames}/${job.total_frames}`,
              String(job.failed_frames),
              formatDuration(job.eta_seconds),
              String(job.priority),
              formatAgo(job.created_at),
            ]),
          )}\n`,
        );
        if (next_cursor) process.stdout.write(`(more jobs: --limit ${Math.min(200, options.limit * 2)})\n`);
      }),
    );
}
