/**
 * The lease on a task in hand, whatever its kind: renewed in the background while the node
 * works, with the master's cancel, the node's shutdown and the loss of the lease turned into
 * one abort signal for the work.
 */
import type { UpdateTaskStatusRequest } from '../../protocol/schemas.ts';
import type { Logger } from '../logger.ts';
import { FarmApiError } from '../../protocol/http-client.ts';
import type { MasterClient } from '../master-client.ts';

/** The three ids that fence every call about a task. */
export interface LeaseIds {
  worker_id: string;
  task_id: string;
  lease_id: string;
}

/** A 409 or 404 about a task means the master gave it to someone else or forgot it. */
export const leaseGone = (err: unknown) => err instanceof FarmApiError && (err.status === 409 || err.status === 404);

/** Warnings that ride on renewals: taken for one, given back when it fails (missing-files.ts). */
interface PendingWarnings {
  take(): string[];
  unsend(warnings: string[]): void;
}

export interface TaskLeaseOptions {
  client: MasterClient;
  log: Logger;
  ids: LeaseIds;
  /** Names the task in log lines. */
  label: string;
  /** The lease's length from the assignment; renewals go out at a third of it. */
  leaseMs: number;
  /** The node's shutdown: aborts the work too. */
  stop: AbortSignal;
  /** Progress sent with each renewal (the frame being rendered, Blender's peak memory). */
  progress?: () => Pick<UpdateTaskStatusRequest, 'current_frame' | 'peak_mem_mb'>;
  /** Warnings to send with renewals, once there are any. */
  warnings?: () => PendingWarnings | null;
}

/**
 * Renews the lease well before it expires (every third of its length, at most every 15 s; a
 * renewal that fails transiently is retried inside the client). `signal` aborts when the master
 * cancels the task, when the node shuts down, or when the lease is gone (`lost` tells which).
 * Call `end()` when the work is over.
 */
export class TaskLease {
  readonly ids: LeaseIds;
  /** True once the master said the lease is gone: the task is someone else's now. */
  lost = false;
  private readonly work = new AbortController();
  private readonly options: TaskLeaseOptions;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly onStop = () => this.work.abort();

  constructor(options: TaskLeaseOptions) {
    this.options = options;
    this.ids = options.ids;
    options.stop.addEventListener('abort', this.onStop);
    if (options.stop.aborted) this.work.abort();
    const renewEveryMs = Math.max(1_000, Math.min(15_000, Math.floor(options.leaseMs / 3)));
    this.heartbeat = setInterval(() => this.renew(), renewEveryMs);
  }

  /** Aborts on cancel, shutdown or a lost lease. */
  get signal(): AbortSignal {
    return this.work.signal;
  }

  /** Drops the task: the master says the lease is gone. */
  loseLease(why: unknown): void {
    if (!this.lost)
      this.options.log.warn(`lease on ${this.options.label} lost (${why instanceof FarmApiError ? why.summary : (why as Error).message}); dropping the task`);
    this.lost = true;
    this.work.abort();
  }

  /** Stops renewing and listening. */
  end(): void {
    clearInterval(this.heartbeat);
    this.options.stop.removeEventListener('abort', this.onStop);
  }

  private renew(): void {
    const { client, log, label } = this.options;
    const pending = this.options.warnings?.() ?? null;
    const warnings = pending?.take() ?? [];
    const progress = this.options.progress?.() ?? {};
    client
      .updateTask({ ...this.ids, status: 'running', ...progress, ...(warnings.length ? { warnings } : {}) })
      .then((r) => {
        if (r.abort) {
          log.warn(`the master canceled ${label}`);
          this.work.abort();
        }
      })
      .catch((err) => {
        pending?.unsend(warnings);
        if (leaseGone(err)) this.loseLease(err);
        else log.warn(`renewing lease: ${(err as Error).message}`);
      });
  }
}
