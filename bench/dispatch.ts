/**
 * Benchmark 2, dispatch: how fast the master hands out work, against the cheapest request it
 * serves (`GET /time`, a no-op) on the same master in the same run.
 *
 *   (a) claims: `POST /get_job` calls that each return a task (chunk_size 1, a million frames);
 *   (b) whole tasks: get_job, `running`, a tiny PNG `PUT` and `completed`, one after another.
 *
 * Simulated nodes are concurrent keep-alive HTTP clients (one registered worker per loop). Every
 * frame handed out is recorded: the run fails if any frame was handed out twice.
 *
 *   node bench/dispatch.ts [--nodes 32] [--seconds 5]
 */
import { parseArgs } from 'node:util';
import { BENCH_MASTER_VARS, closedLoop, isMain, machineInfo, pool, postJson, report, runBench, send, startMaster, TINY_PNG, verdict } from './lib.ts';

interface Task {
  task_id: string;
  lease_id: string;
  frames: number[];
}

export interface DispatchResult {
  noopRate: number;
  claimRate: number;
  taskRate: number;
  duplicates: number;
}

export async function benchDispatch(options: { nodes: number; seconds: number }): Promise<DispatchResult> {
  const { nodes, seconds } = options;
  console.log(`dispatch: ${nodes} simulated nodes, ${seconds} s per phase, master under wrangler dev`);
  const master = await startMaster({ name: 'bench-dispatch', vars: BENCH_MASTER_VARS });
  const http = pool(master.url, nodes);
  try {
    const workers: string[] = [];
    for (let i = 0; i < nodes; i++) {
      const { status, text } = await postJson(http, '/register_worker', { name: `sim-${i}` });
      if (status !== 201) throw new Error(`register_worker answered ${status}: ${text}`);
      workers.push((JSON.parse(text) as { worker_id: string }).worker_id);
    }
    // One frame per claim, and more frames than any run can hand out.
    const form = new FormData();
    form.set('blend_file', new Blob([Buffer.concat([Buffer.from('BLENDER-v304'), Buffer.alloc(4096)])]), 'bench.blend');
    form.set('start_frame', '1');
    form.set('end_frame', '1000000');
    form.set('chunk_size', '1');
    const submitted = await fetch(`${master.url}/submit_job`, { method: 'POST', body: form });
    if (submitted.status !== 201) throw new Error(`submit_job answered ${submitted.status}: ${await submitted.text()}`);

    const handedOut: number[] = [];
    const claim = async (loop: number): Promise<Task | null> => {
      const { status, text } = await postJson(http, '/get_job', { worker_id: workers[loop] });
      if (status === 204) return null;
      if (status !== 200) throw new Error(`get_job answered ${status}: ${text.slice(0, 200)}`);
      const task = JSON.parse(text) as Task;
      handedOut.push(...task.frames);
      return task;
    };
    const noop = async () => {
      const { status } = await send(http, 'GET', '/time');
      if (status !== 200) throw new Error(`GET /time answered ${status}`);
      return true;
    };
    const wholeTask = async (loop: number) => {
      const task = await claim(loop);
      if (!task) return false;
      const lease = { worker_id: workers[loop], task_id: task.task_id, lease_id: task.lease_id };
      const running = await postJson(http, '/update_task_status', { ...lease, status: 'running' });
      if (running.status !== 200) throw new Error(`running answered ${running.status}: ${running.text.slice(0, 200)}`);
      const put = await send(http, 'PUT', `/tasks/${task.task_id}/frames/${task.frames[0]}?ext=png`, TINY_PNG, {
        'content-type': 'image/png',
        'x-farm-worker-id': workers[loop]!,
        'x-farm-lease-id': task.lease_id,
      });
      if (put.status !== 201) throw new Error(`frame upload answered ${put.status}: ${put.text.slice(0, 200)}`);
      const done = await postJson(http, '/update_task_status', { ...lease, status: 'completed' });
      if (done.status !== 200) throw new Error(`completed answered ${done.status}: ${done.text.slice(0, 200)}`);
      return true;
    };

    await closedLoop(nodes, 1_000, noop); // warm-up: connections, JIT, SQLite pages
    const noopBefore = await closedLoop(nodes, seconds * 1000, noop);
    const claims = await closedLoop(nodes, seconds * 1000, async (loop) => (await claim(loop)) !== null);
    const tasks = await closedLoop(nodes, seconds * 1000, wholeTask);
    const noopAfter = await closedLoop(nodes, seconds * 1000, noop);

    const duplicates = handedOut.length - new Set(handedOut).size;
    const noopRate = (noopBefore.rate + noopAfter.rate) / 2;
    console.log('results:');
    report('GET /time (no-op), before / after', `${noopBefore.rate.toFixed(0)} / ${noopAfter.rate.toFixed(0)}`, 'req/s');
    report(
      '(a) claims that returned a task',
      claims.rate,
      '/s',
      `${claims.count} claims, ${claims.errors} errors${claims.firstError ? `: ${claims.firstError}` : ''}`,
    );
    report(
      '(b) whole tasks (4 requests each)',
      tasks.rate,
      '/s',
      `${tasks.count} tasks, ${tasks.errors} errors${tasks.firstError ? `: ${tasks.firstError}` : ''}`,
    );
    report('frames handed out / handed out twice', `${handedOut.length} / ${duplicates}`);
    verdict('(a) claims / no-op', claims.rate / noopRate, '>= 0.8', claims.rate / noopRate >= 0.8);
    verdict('(a) claims per second', claims.rate, '>= 1000', claims.rate >= 1000);
    verdict('(b) whole tasks / no-op', tasks.rate / noopRate, '>= 0.2', tasks.rate / noopRate >= 0.2);
    verdict('frames handed out twice', duplicates, '= 0', duplicates === 0);
    return { noopRate, claimRate: claims.rate, taskRate: tasks.rate, duplicates };
  } finally {
    await http.close();
    await master.stop();
  }
}

if (isMain(import.meta)) {
  const { values } = parseArgs({ options: { nodes: { type: 'string', default: '32' }, seconds: { type: 'string', default: '5' } } });
  runBench(async () => {
    console.log(`machine: ${machineInfo()}`);
    const result = await benchDispatch({ nodes: Number(values.nodes), seconds: Number(values.seconds) });
    return result.duplicates === 0 ? 0 : 1;
  });
}
