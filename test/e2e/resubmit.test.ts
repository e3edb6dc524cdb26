/**
 * Projects stored file by file, end to end: the real CLI sends a generated textured project to a
 * real master (wrangler dev), a real node renders it with real Blender. After a tweak to the
 * .blend, the second submission uploads only the .blend (counted by a proxy in front of the
 * master for the CLI) and the node downloads only the manifest and the .blend (counted by a proxy
 * in front of the master for the node); the frame equals a local render pixel for pixel; and a
 * cached file corrupted on the node's disk is detected and downloaded again.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameInfo, JobStatusResponse } from '../../protocol/schemas.ts';
import { BLENDER, ROOT, startMaster, startNode, tempDir, waitForJob, type Master, type RenderNode } from './harness.ts';
import { decodePng } from './png.ts';
import { runFarm, startCountingProxy, type CountingProxy } from './upload-measure.ts';

const execFileAsync = promisify(execFile);
/** What a resubmission may move beyond the changed file: requests, headers, the manifest. */
const OVERHEAD = 256 * 1024;

/** A proxy that records the node's downloads: each GET's path and the bytes it answered with. */
async function startDownloadProxy(target: string): Promise<{ url: string; gets: { path: string; bytes: number }[]; close(): Promise<void> }> {
  const upstream = new URL(target);
  const gets: { path: string; bytes: number }[] = [];
  const server: Server = createServer((req, res) => {
    const forward = request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      const record = req.method === 'GET' && /^\/(download_blend|manifests)\//.test(req.url ?? '') ? { path: req.url!, bytes: 0 } : null;
      if (record) gets.push(record);
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.on('data', (chunk: Buffer) => record && (record.bytes += chunk.length));
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    gets,
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

interface SubmitOutput {
  job_id: string;
  kind: string;
  blob_sha256: string;
  uploaded_bytes: number;
  files: number;
}

const sha = (path: string) => execFileSync('sha256sum', [path], { encoding: 'utf8' }).slice(0, 64);

describe('resubmitting a project after a tweak moves only what changed', () => {
  const dir = tempDir('e2e-resubmit');
  let master: Master;
  let node: RenderNode;
  let cliProxy: CountingProxy;
  let nodeProxy: Awaited<ReturnType<typeof startDownloadProxy>>;
  let blend: string;

  beforeAll(async () => {
    master = await startMaster({ name: 'resubmit' });
    cliProxy = await startCountingProxy(master.url);
    nodeProxy = await startDownloadProxy(master.url);
    node = startNode({ name: 'resubmit', master: nodeProxy.url });
    const out = execFileSync(
      BLENDER,
      ['-b', '--factory-startup', '--python', join(ROOT, 'test', 'scenes', 'make_texture_scene.py'), '--', join(dir, 'project')],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    blend = (
      JSON.parse(
        out
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .pop()!,
      ) as { blend: string }
    ).blend;
  }, 180_000);

  afterAll(async () => {
    await node?.stop();
    await Promise.all([cliProxy?.close(), nodeProxy?.close()]);
  });

  /** `farm submit` through the counting proxy; waits for the job to complete. */
  async function submitAndRender(): Promise<{ result: SubmitOutput; partBytes: number; downloads: { path: string; bytes: number }[] }> {
    cliProxy.reset();
    const before = nodeProxy.gets.length;
    const run = await runFarm(['--master', cliProxy.url, 'submit', blend, '--frames', '1', '--json', '--no-progress'], { env: { BLENDER } });
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as SubmitOutput;
    const status = await waitForJob(master.url, result.job_id, ['completed', 'failed'], 120_000);
    expect(status, JSON.stringify(status)).toMatchObject({ status: 'completed', completed_frames: 1 });
    return { result, partBytes: cliProxy.partBytes, downloads: nodeProxy.gets.slice(before) };
  }

  /** Re-saves the .blend with a change that does not alter the picture. */
  function tweakBlend(n: number): void {
    execFileSync(BLENDER, ['-b', '--factory-startup', blend, '--python-expr', `import bpy; bpy.data.scenes[0]["tweak"] = ${n}; bpy.ops.wm.save_mainfile()`], {
      stdio: 'ignore',
      timeout: 120_000,
    });
  }

  async function expectFrameEqualsLocal(jobId: string, label: string): Promise<void> {
    const { frames } = (await (await fetch(`${master.url}/jobs/${jobId}/frames`)).json()) as { frames: FrameInfo[] };
    const farm = decodePng(Buffer.from(await (await fetch(`${master.url}${frames[0]!.url}`)).arrayBuffer()));
    const local = join(dir, `local-${label}`);
    await execFileAsync(BLENDER, ['-b', '--factory-startup', '--disable-autoexec', '-noaudio', blend, '-o', join(local, 'f_######'), '-t', '1', '-f', '1']);
    const reference = decodePng(readFileSync(join(local, 'f_000001.png')));
    expect(farm.pixelHash, `${label}: the farm's frame equals a local render`).toBe(reference.pixelHash);
  }

  it('sends and downloads only the changed .blend, renders it exactly, and refetches a corrupted cached file', async () => {
    const first = await submitAndRender();
    expect(first.result).toMatchObject({ kind: 'manifest', files: 4 });
    const projectBytes = first.result.uploaded_bytes;
    expect(first.partBytes).toBe(projectBytes);
    await expectFrameEqualsLocal(first.result.job_id, 'first');

    tweakBlend(1);
    const blendSize = statSync(blend).size;
    const second = await submitAndRender();
    // The CLI sent the .blend, nothing else.
    expect(second.result.uploaded_bytes).toBe(blendSize);
    expect(second.partBytes).toBeLessThanOrEqual(1.1 * blendSize + OVERHEAD);
    // The node fetched the new manifest and the .blend, nothing else.
    const fileGets = second.downloads.filter((d) => d.path.startsWith('/manifests/'));
    expect(fileGets.map((d) => d.path.split('/').pop())).toEqual([sha(blend)]);
    const downloaded = second.downloads.reduce((sum, d) => sum + d.bytes, 0);
    expect(downloaded).toBeGreaterThanOrEqual(blendSize);
    expect(downloaded).toBeLessThanOrEqual(1.1 * blendSize + OVERHEAD);
    const status = (await (await fetch(`${master.url}/jobs/${second.result.job_id}`)).json()) as JobStatusResponse;
    expect(status.inputs).toMatchObject({ kind: 'manifest', sent_bytes: blendSize });
    expect(status.inputs!.files.map((f) => f.path)).toEqual(['scene.blend', 'tex/color.png', 'tex/udim.1001.png', 'tex/udim.1002.png']);
    await expectFrameEqualsLocal(second.result.job_id, 'second');

    // A cached texture changed on the node's disk is noticed and fetched again, not rendered.
    const texture = join(dir, 'project', 'tex', 'color.png');
    const cached = join(node.workDir, 'files', sha(texture));
    chmodSync(cached, 0o644);
    writeFileSync(cached, Buffer.alloc(statSync(texture).size, 0));
    tweakBlend(2);
    const third = await submitAndRender();
    const refetched = third.downloads.filter((d) => d.path.startsWith('/manifests/')).map((d) => d.path.split('/').pop());
    expect(refetched.sort()).toEqual([sha(blend), sha(texture)].sort());
    expect(sha(cached)).toBe(sha(texture));
    await expectFrameEqualsLocal(third.result.job_id, 'third');
  });
});
