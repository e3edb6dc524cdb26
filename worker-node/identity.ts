/** The node's identity, kept in its work dir so that a restarted node is the same node. */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * This process's life: random, made once when the node starts and sent with every registration
 * (by each render slot alike). The master, seeing a known node register with a new one, knows the
 * node restarted and hands back at once the tasks its earlier life held, instead of waiting for
 * their leases to run out. Never saved: the next start is a new life.
 */
export const BOOT_ID: string = randomUUID();

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

/**
 * The node's own credential, issued by the master when the node enrolled. Kept beside
 * worker.json in a file only this user can read (mode 0600): whoever reads it can act as this
 * node. Tied to the master that issued it.
 */
export interface NodeCredential {
  master: string;
  worker_id: string;
  node_token: string;
}

export const CREDENTIAL_FILE = 'node-credential.json';

/** The credential `master` gave this node, if any. */
export async function loadCredential(workDir: string, master: string): Promise<NodeCredential | undefined> {
  try {
    const saved = JSON.parse(await readFile(join(workDir, CREDENTIAL_FILE), 'utf8')) as Partial<NodeCredential>;
    if (saved.master !== master || typeof saved.worker_id !== 'string' || typeof saved.node_token !== 'string') return undefined;
    return { master, worker_id: saved.worker_id, node_token: saved.node_token };
  } catch {
    return undefined;
  }
}

/** Saves the credential with mode 0600, replacing the previous one atomically. */
export async function saveCredential(workDir: string, credential: NodeCredential): Promise<void> {
  await mkdir(workDir, { recursive: true });
  const tmp = join(workDir, `${CREDENTIAL_FILE}.tmp`);
  await rm(tmp, { force: true });
  // `mode` applies only when the file is created, hence the removal above and chmod after.
  await writeFile(tmp, JSON.stringify(credential, null, 2), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, join(workDir, CREDENTIAL_FILE));
}

/** Forgets a credential the master no longer accepts. */
export async function forgetCredential(workDir: string): Promise<void> {
  await rm(join(workDir, CREDENTIAL_FILE), { force: true });
}
