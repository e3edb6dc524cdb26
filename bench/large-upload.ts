/**
 * The large-upload benchmark: a fresh master (wrangler dev), a file of FARM_BENCH_UPLOAD_MB MiB
 * (default 1024) uploaded with `farm submit` through a byte-counting proxy, killed half-way,
 * resumed, then submitted again. Prints what travelled and how much memory the master's workerd
 * processes and the CLI needed. `npm test` runs the same scenario smaller (test/e2e/large-upload).
 *
 *   node bench/large-upload.ts            # 1 GiB
 *   FARM_BENCH_UPLOAD_MB=200 node bench/large-upload.ts
 */
import { rmSync } from 'node:fs';
import { startMaster, tempDir } from '../test/e2e/harness.ts';
import { runUploadScenario } from '../test/e2e/upload-measure.ts';

const MiB = 1024 * 1024;
const size = Number(process.env.FARM_BENCH_UPLOAD_MB ?? 1024) * MiB;
const partSize = Number(process.env.FARM_BENCH_PART_MB ?? 16) * MiB;
const dir = tempDir('bench-upload');
const master = await startMaster({ name: 'bench-upload', vars: { BLOB_PART_BYTES: String(partSize) } });
const mb = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
try {
  const started = Date.now();
  const r = await runUploadScenario({ masterUrl: master.url, wranglerPid: master.process.pid!, dir, size, partSize });
  const ok = r.downloadedSha256 === r.sha256 && r.resumed.result.blob_sha256 === r.sha256;
  console.log(`file: ${mb(r.size)} in ${r.partCount} parts of ${mb(r.partSize)}, SHA-256 ${r.sha256}`);
  console.log(`run 1 (killed with ${r.killed.signal}): ${r.killed.partsStored} parts stored, ${mb(r.killed.partBytes)} sent`);
  console.log(
    `run 2 (resumed): sent ${mb(r.resumed.partBytes)} in ${r.resumed.seconds.toFixed(1)} s; CLI says uploaded ${mb(Number(r.resumed.result.uploaded_bytes))}, skipped ${mb(Number(r.resumed.result.skipped_bytes))}`,
  );
  for (const line of r.resumed.stderr.split('\n').filter((l) => l.startsWith('retrying'))) console.log(`  run 2: ${line}`);
  console.log(`run 3 (same file again): sent ${mb(r.again.partBytes)}; CLI says uploaded ${mb(Number(r.again.result.uploaded_bytes))}`);
  console.log(`downloaded SHA-256 ${ok ? 'matches' : `DIFFERS: ${r.downloadedSha256}`}`);
  const m = r.master;
  console.log(
    `master (workerd RSS): ${mb(m.baseline)} before; peak growth ${mb(m.peak - m.baseline)} (first half of the parts ${mb(m.firstHalf - m.baseline)}, second half ${mb(m.secondHalf - m.baseline)}, hashing at complete ${mb(m.complete - m.baseline)})`,
  );
  console.log(`CLI: peak RSS ${mb(r.cliPeak)} (a CLI that only prints its help: ${mb(r.cliBaseline)}; growth ${mb(r.cliPeak - r.cliBaseline)})`);
  console.log(`total ${((Date.now() - started) / 1000).toFixed(1)} s`);
  process.exitCode = ok ? 0 : 1;
} finally {
  await master.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(master.persistDir, { recursive: true, force: true });
}
