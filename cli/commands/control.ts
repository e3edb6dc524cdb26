/**
 * Job control from the command line: `farm cancel|pause|resume|requeue JOB`,
 * `farm priority JOB N`, `farm delete JOB`, `farm webhook JOB [URL]`.
 */
import { createInterface } from 'node:readline/promises';
import { InvalidArgumentError, type Command } from 'commander';
import type { JobControlResponse } from '../../protocol/api.ts';
import type { FarmClient } from '../../protocol/client.ts';
import { action, clientFor, printJson, resolveJobId } from '../context.ts';
import { UsageError } from '../exit-codes.ts';
import { formatPercent } from '../format.ts';

function describeChange(job: JobControlResponse, verb: string): string {
  const progress = `${job.completed_frames}/${job.total_frames} frames, ${formatPercent(job.progress)}`;
  if (job.previous_status === job.status && verb !== 'priority') return `job ${job.name} (${job.job_id}) was already ${job.status} (${progress})`;
  return `job ${job.name} (${job.job_id}) is ${job.status}${job.previous_status !== job.status ? ` (was ${job.previous_status})` : ''}, ${progress}`;
}

/** Adds one `farm VERB JOB` command that calls `call` and prints the job after the change. */
function jobCommand(program: Command, verb: string, description: string, call: (client: FarmClient, jobId: string) => Promise<JobControlResponse>): void {
  program
    .command(verb)
    .description(description)
    .argument('<job>', 'job id (or its first characters)')
    .option('--json', 'print the job after the change as JSON')
    .action(
      action(verb, async (jobArg: string, options: { json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const job = await call(client, await resolveJobId(client, jobArg));
        if (options.json) printJson(job);
        else process.stdout.write(`${describeChange(job, verb)}\n`);
      }),
    );
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

export function register(program: Command): void {
  jobCommand(program, 'cancel', 'cancel a job: no more frames are handed out and nodes rendering it stop', (c, id) => c.cancel(id));
  jobCommand(program, 'pause', 'pause a job: no new frames are handed out; frames being rendered finish', (c, id) => c.pause(id));
  jobCommand(program, 'resume', 'resume a paused or canceled job', (c, id) => c.resume(id));

  program
    .command('priority')
    .description('change the priority of a job (0-100, higher runs first)')
    .argument('<job>', 'job id (or its first characters)')
    .argument('<priority>', 'the new priority, 0-100', (value: string) => {
      const n = Number(value);
      if (!/^\d+$/.test(value) || n > 100) throw new InvalidArgumentError('the priority must be a whole number from 0 to 100.');
      return n;
    })
    .option('--json', 'print the job after the change as JSON')
    .action(
      action('priority', async (jobArg: string, priority: number, options: { json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const job = await client.updateJob(await resolveJobId(client, jobArg), { priority });
        if (options.json) printJson(job);
        else process.stdout.write(`job ${job.name} (${job.job_id}) now has priority ${job.priority}\n`);
      }),
    );

  program
    .command('requeue')
    .description("send a job's failed frames back to the queue with fresh attempts")
    .argument('<job>', 'job id (or its first characters)')
    .option('--json', 'print the answer as JSON')
    .action(
      action('requeue', async (jobArg: string, options: { json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const answer = await client.requeueFailed(await resolveJobId(client, jobArg));
        if (options.json) printJson(answer);
        else process.stdout.write(`requeued ${answer.requeued_tasks} failed frame range(s); job ${answer.job_id} is ${answer.status}\n`);
      }),
    );

  program
    .command('delete')
    .description('delete a job with its frames, previews and logs (asks first unless --yes)')
    .argument('<job>', 'job id (or its first characters)')
    .option('-y, --yes', 'do not ask')
    .option('--json', 'print the answer as JSON')
    .action(
      action('delete', async (jobArg: string, options: { yes?: boolean; json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const jobId = await resolveJobId(client, jobArg);
        if (!options.yes) {
          if (!process.stdin.isTTY) throw new UsageError('deleting cannot be undone: pass --yes to delete without a question');
          const job = await client.jobStatus(jobId);
          if (!(await confirm(`delete job ${job.name} (${jobId}) with its ${job.completed_frames} frame(s)?`))) {
            process.stderr.write('nothing deleted\n');
            return;
          }
        }
        const answer = await client.deleteJob(jobId);
        if (options.json) printJson(answer);
        // The master removes the job's files in the background (its cron), a page per minute.
        else process.stdout.write(`deleted job ${jobId}; its stored files are removed within minutes\n`);
      }),
    );

  program
    .command('webhook')
    .description("show a job's webhook, or set the URL the master POSTs to when the job completes or fails")
    .argument('<job>', 'job id (or its first characters)')
    .argument('[url]', 'http(s) URL to call; omit to show the current state')
    .option('--remove', 'remove the webhook')
    .option('--json', 'print the webhook state as JSON')
    .action(
      action('webhook', async (jobArg: string, url: string | undefined, options: { remove?: boolean; json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const jobId = await resolveJobId(client, jobArg);
        if (url !== undefined && options.remove) throw new UsageError('give a URL or --remove, not both');
        if (url !== undefined || options.remove) await client.updateJob(jobId, { webhook_url: options.remove ? null : url! });
        const hook = await client.webhook(jobId);
        if (options.json) printJson(hook);
        else if (!hook.webhook_url) process.stdout.write(`job ${jobId} has no webhook\n`);
        else {
          process.stdout.write(
            `${hook.webhook_url}: ${hook.state}${hook.attempts ? `, ${hook.attempts} attempt(s)` : ''}` +
              `${hook.last_error ? `, last error: ${hook.last_error}` : ''}${hook.delivered_at ? `, delivered ${hook.delivered_at}` : ''}` +
              `${hook.signed ? ', signed' : ''}\n`,
          );
          if (hook.warning) process.stderr.write(`farm: warning: ${hook.warning}\n`);
        }
      }),
    );
}
