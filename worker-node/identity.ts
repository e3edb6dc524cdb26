/** The node's identity, kept in its work dir so that a restarted node is the same node. */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

interface Identity {
  worker_id: string;
  master: string;
}

const FILE = 'worker.json';

/** The worker id this node was given by `master` before, if any. */
export async function loadWorkerId(workDir: string, master: string): Promise<string | undefined> {
  try {
    const saved = JSON.parse(await readFile(join(workDir, FILE), 'utf8')) as Partial<Identity>;
    return saved.master === master && typeof saved.worker_id === 'string' ? saved.worker_id : undefined;
  } catch {
    return undefined;
  }
}

export async function saveWorkerId(workDir: string, master: string, workerId: string): Promise<void> {
  await mkdir(workDir, { recursive: true });
  const tmp = join(workDir, `${FILE}.tmp`);
  await writeFile(tmp, JSON.stringify({ worker_id: workerId, master } satisfies Identity, null, 2));
  await rename(tmp, join(workDir, FILE));
}
