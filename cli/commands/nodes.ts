/** `farm nodes` (the render nodes) and `farm drain|disable|enable NODE`. */
import type { Command } from 'commander';
import type { WorkerInfo } from '../../protocol/api.ts';
import { action, clientFor, printJson, resolveWorkerId } from '../context.ts';
import { formatAgo, table } from '../format.ts';

function devices(node: WorkerInfo): string {
  if (node.devices.length > 0) return node.devices.map((d) => `${d.type}: ${d.name}`).join('; ');
  return node.threads ? `${node.threads} threads` : '–';
}

export function register(program: Command): void {
  program
    .command('nodes')
    .description('list render nodes: state, current job and frame, devices, frames rendered, failures')
    .option('--json', 'print the nodes as JSON')
    .action(
      action('nodes', async (options: { json?: boolean }, command: Command) => {
        const { workers } = await clientFor(command).workers();
        if (options.json) {
          printJson({ workers });
          return;
        }
        if (workers.length === 0) {
          process.stdout.write('no render nodes yet: start one with npm run worker -- --master URL\n');
          return;
        }
        process.stdout.write(
          `${table(
            ['NAME', 'STATE', 'WORKING ON', 'DEVICES', 'FRAMES', 'FAILURES', 'LAST SEEN', 'ID'],
            workers.map((w) => [
              w.name,
              w.state,
              w.current_job_id ? `job ${w.current_job_id.slice(0, 8)}${w.current_frame !== null ? ` frame ${w.current_frame}` : ''}` : '–',
              devices(w),
              String(w.frames_rendered),
              String(w.failures),
              formatAgo(w.last_seen_at),
              w.worker_id,
            ]),
          )}\n`,
        );
      }),
    );

  const controls = [
    ['drain', 'stop giving a node new work; its current task finishes'],
    ['disable', 'stop giving a node work and hand its current task to another node now'],
    ['enable', 'let a drained or disabled node take work again'],
  ] as const;
  for (const [verb, description] of controls) {
    program
      .command(verb)
      .description(description)
      .argument('<node>', 'node name, id, or the first characters of its id')
      .option('--json', 'print the node after the change as JSON')
      .action(
        action(verb, async (nodeArg: string, options: { json?: boolean }, command: Command) => {
          const client = clientFor(command);
          const node = await client.controlWorker(await resolveWorkerId(client, nodeArg), verb);
          if (options.json) printJson(node);
          else {
            process.stdout.write(
              `node ${node.name} (${node.worker_id}) is ${node.state}` +
                `${node.released_tasks ? `; ${node.released_tasks} task(s) went back to the queue` : ''}\n`,
            );
          }
        }),
      );
  }
}
