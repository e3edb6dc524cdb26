/**
 * The resubmission benchmark: a generated project (a .blend referencing FARM_BENCH_IMAGES images,
 * default 20, of about FARM_BENCH_IMAGE_MB MiB each, default 10: about 200 MB) sent with `farm
 * submit` to a fresh master (wrangler dev) and rendered by a real node, four times: first; after a
 * change to the .blend; after a change to one image; unchanged. A proxy in front of the master for
 * the CLI counts the bytes the CLI sends (every request body), one for the node the bytes it
 * downloads (every response body). Goals (issue 18): a resubmission moves at most 1.1x the changed
 * file plus 256 KiB each way; an unchanged one at most 256 KiB.
 *
 *   node bench/resubmit.ts
 *   FARM_BENCH_IMAGES=5 FARM_BENCH_IMAGE_MB=2 node bench/resubmit.ts
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { runFarm } from '../test/e2e/upload-measure.ts';
import { BENCH_MASTER_VARS, BLENDER, report, runBench, startMaster, startNode, tempDir, verdict, waitForJob } from './lib.ts';

const MiB = 1024 * 1024;
const OVERHEAD = 256 * 1024;
const IMAGES = Number(process.env.FARM_BENCH_IMAGES ?? 20);
const IMAGE_BYTES = Number(process.env.FARM_BENCH_IMAGE_MB ?? 10) * MiB;

/** A valid PNG of random pixels (stored, not compressed) of about `bytes`: incompressible, like a photo. */
function noisePng(bytes: number): Buffer {
  const side = Math.ceil(Math.sqrt(bytes / 3));
  const raw = Buffer.alloc((side * 3 + 1) * side);
  const noise = randomBytes(side * 3 * side);
  for (let y = 0; y < side; y++) noise.copy(raw, y * (side * 3 + 1) + 1, y * side * 3, (y + 1) * side * 3);
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 0 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A proxy that counts request body bytes (up) and response body bytes (down). */
async function countingProxy(target: string): Promise<{ url: string; up: number; down: number; reset(): void; close(): Promise<void> }> {
  const upstream = new URL(target);
  const counts = { up: 0, down: 0 };
  const server: Server = createServer((req, res) => {
    const forward = request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.on('data', (c: Buffer) => (counts.down += c.length));
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.on('data', (c: Buffer) => (counts.up += c.length));
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    get up() {
      return counts.up;
    },
    get down() {
      return counts.down;
    },
    reset() {
      counts.up = 0;
      counts.down = 0;
    },
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/** The project: images written here, then a .blend that names each (fake user) and renders tiny. */
function makeProject(dir: string): string {
  mkdirSync(join(dir, 'tex'), { recursive: true });
  for (let i = 0; i < IMAGES; i++) writeFileSync(join(dir, 'tex', `img_${String(i).padStart(2, '0')}.png`), noisePng(IMAGE_BYTES));
  const blend = join(dir, 'scene.blend');
  const script = [
    'import bpy',
    's = bpy.context.scene',
    's.render.resolution_x = 32; s.render.resolution_y = 32; s.render.engine = "CYCLES"; s.cycles.samples = 1; s.cycles.use_denoising = False',
    'cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam")); s.collection.objects.link(cam); s.camera = cam',
    `for i in range(${IMAGES}):`,
    '    img = bpy.data.images.new(f"img{i}", 4, 4)',
    '    img.source = "FILE"; img.filepath = f"//tex/img_{i:02d}.png"; img.use_fake_user = True',
    `bpy.ops.wm.save_as_mainfile(filepath=${JSON.stringify(blend)})`,
  ].join('\n');
  execFileSync(BLENDER, ['-b', '--factory-startup', '--python-expr', script], { stdio: 'ignore', timeout: 300_000 });
  return blend;
}

async function main(): Promise<number> {
  const dir = tempDir('bench-resubmit');
  const project = join(dir, 'project');
  const blend = makeProject(project);
  const total = IMAGES * statSync(join(project, 'tex', 'img_00.png')).size + statSync(blend).size;
  console.log(`project: ${blend} and ${IMAGES} images, ${(total / MiB).toFixed(1)} MiB in all`);
  const master = await startMaster({ name: 'bench-resubmit', vars: BENCH_MASTER_VARS });
  const cli = await countingProxy(master.url);
  const nodeSide = await countingProxy(master.url);
  const node = startNode({ name: 'bench-resubmit', master: nodeSide.url });
  let met = true;
  try {
    const steps: [string, () => string | null][] = [
      ['first submission', () => null],
      [
        'after a change to the .blend',
        () => {
          execFileSync(
            BLENDER,
            ['-b', '--factory-startup', blend, '--python-expr', 'import bpy; bpy.data.scenes[0]["tweak"] = 1; bpy.ops.wm.save_mainfile()'],
            { stdio: 'ignore' },
          );
          return blend;
        },
      ],
      [
        'after a change to one image',
        () => {
          const image = join(project, 'tex', `img_${String(Math.min(7, IMAGES - 1)).padStart(2, '0')}.png`);
          writeFileSync(image, noisePng(IMAGE_BYTES));
          return image;
        },
      ],
      ['unchanged', () => null],
    ];
    for (const [i, [label, change]] of steps.entries()) {
      const changed = change();
      // The node's polls count too; measure from a quiet moment to the job's end.
      cli.reset();
      nodeSide.reset();
      const run = await runFarm(['--master', cli.url, 'submit', blend, '--frames', '1', '--json', '--no-progress', '--no-preview-video'], { env: { BLENDER } });
      if (run.code !== 0) throw new Error(`farm submit failed: ${run.stderr}`);
      const job = JSON.parse(run.stdout) as { job_id: string; uploaded_bytes: number };
      const status = await waitForJob(master.url, job.job_id, ['completed', 'failed'], 600_000);
      const up = cli.up;
      const down = nodeSide.down;
      console.log(`${label}: job ${status.status}`);
      report('bytes sent by the CLI (all request bodies)', up, 'B', `${(up / MiB).toFixed(2)} MiB`);
      report('bytes downloaded by the node (all responses)', down, 'B', `${(down / MiB).toFixed(2)} MiB`);
      if (i === 0) continue;
      const limit = changed ? 1.1 * statSync(changed).size + OVERHEAD : OVERHEAD;
      const goal = changed ? `<= 1.1 x ${statSync(changed).size} + 256 KiB` : '<= 256 KiB';
      met = verdict('  CLI bytes / limit', up / limit, goal, up <= limit) && met;
      met = verdict('  node bytes / limit', down / limit, goal, down <= limit) && met;
    }
  } finally {
    await node.stop();
    await Promise.all([cli.close(), nodeSide.close()]);
    await master.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(master.persistDir, { recursive: true, force: true });
  }
  return met ? 0 : 1;
}

runBench(main);
