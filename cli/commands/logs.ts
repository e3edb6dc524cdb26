/** `farm logs JOB FRAME`: the Blender log of the task that rendered (or is rendering) a frame. */
import { InvalidArgumentError, type Command } from 'commander';
import { FarmApiError } from '../../protocol/client.ts';
import { FRAME_MAX } from '../../protocol/schemas.ts';
import { action, clientFor, printJson, resolveJobId } from '../context.ts';

export function register(program: Command): void {
  program
    .command('logs')
    .description('print the Blender log of the task that rendered a frame (its latest attempt)')
    .argument('<job>', 'job id (or its first characters)')
    .argument('<frame>', 'a frame number of the job', (value: string) => {
      const n = Number(value);
      if (!/^\d+$/.test(value) || n > FRAME_MAX) throw new InvalidArgumentError(`the frame must be a whole number from 0 to ${FRAME_MAX}.`);
      return n;
    })
    .option('--json', 'print the task and its log as JSON')
    .action(
      action('logs', async (jobArg: string, frame: number, options: { json?: boolean }, command: Command) => {
        const client = clientFor(command);
        const jobId = await resolveJobId(client, jobArg);
        const { tasks } = await client.tasks(jobId);
        const task = tasks.find((t) => frame >= t.start_frame && frame <= t.end_frame);
        if (!task) {
          const job = await client.jobStatus(jobId);
          const why =
            frame < job.start_frame || frame > job.end_frame
              ? `frame ${frame} is not in job ${jobId} (frames ${job.start_frame}-${job.end_frame})`
              : `no node has taken frame ${frame} of job ${jobId} yet, so it has no log; try again once it renders (farm watch ${jobId})`;
          throw new FarmApiError(404, 'GET', `/jobs/${jobId}/tasks`, why);
        }
        if (!task.log_url) {
          throw new FarmApiError(
            404,
            'GET',
            `/jobs/${jobId}/tasks`,
            `the task rendering frames ${task.start_frame}-${task.end_frame} (${task.status}) has no log yet: nodes upload it when the task ends`,
          );
        }
        const log = await client.taskLog(jobId, task.task_id);
        if (options.json) printJson({ job_id: jobId, frame, task, log });
        else process.stdout.write(log.endsWith('\n') ? log : `${log}\n`);
      }),
    );
}
