/**
 * The master Worker (edge/index.ts) unchanged, with meters on what Cloudflare bills for it, for
 * bench/cost.ts. Only `wrangler dev` of the benchmark runs this entry point; the production
 * bundle never contains it.
 *
 * - Worker requests: every `fetch` and `scheduled` invocation, by route.
 * - D1 rows read and written: the sums of `meta.rows_read` / `meta.rows_written` of every result
 *   the master gets back, which is what D1 bills. `first()` is run as `all()` to see its meta
 *   (D1's `first()` runs the whole query too and only returns the first row, so the rows are the
 *   same); `raw()` and `exec()` return no meta and are counted as unmetered calls. The same
 *   figures are kept per SQL text (`d1.bySql`), so a benchmark can say which statement writes.
 * - R2 operations by class: A (put, list, multipart create / part / complete), B (get, head),
 *   free (delete, abort).
 * - Durable Object requests: every call on a stub (each RPC call or fetch is one billed request).
 *
 * Requests carrying `x-bench-role: NAME` are counted under NAME (the benchmark's own polling, its
 * submissions) apart from the farm's; the scheduled handler counts under `cron`. The counts are
 * read at `GET /__bench/meter` (with an id of this instance of the Worker, which a reload changes)
 * and reset by `POST /__bench/meter/reset` (neither is counted).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import master, { WorkSignal as MasterWorkSignal } from '../edge/index.ts';
import type { Env } from '../edge/env.ts';

export interface Meter {
  requests: Record<string, number>;
  d1: {
    statements: number;
    batches: number;
    rowsRead: number;
    rowsWritten: number;
    unmetered: number;
    /** Per SQL text (whitespace collapsed): calls and rows. */
    bySql: Record<string, { calls: number; rowsRead: number; rowsWritten: number }>;
  };
  r2: { classA: number; classB: number; free: number; byOperation: Record<string, number> };
  durableObjectRequests: Record<string, number>;
}

const newMeter = (): Meter => ({
  requests: {},
  d1: { statements: 0, batches: 0, rowsRead: 0, rowsWritten: 0, unmetered: 0, bySql: {} },
  r2: { classA: 0, classB: 0, free: 0, byOperation: {} },
  durableObjectRequests: {},
});

let meters: Record<string, Meter> = {};
/**
 * Changes when wrangler reloads the Worker (a file under edge/ changed): the meters start again
 * from zero. Set at the first request (the global scope may not generate random values).
 */
let instance: string | undefined;
const role = new AsyncLocalStorage<string>();
const meter = (): Meter => (meters[role.getStore() ?? 'farm'] ??= newMeter());
const bump = (counts: Record<string, number>, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1;
};

/** `POST /jobs/3f2a.../tasks` -> `POST /jobs/:id/tasks`: ids, hashes and numbers become `:id`. */
function routeOf(request: Request): string {
  const path = new URL(request.url).pathname
    .split('/')
    .map((part) => (/^[0-9a-f-]{16,}(\.\w+)?$/i.test(part) || /^\d+$/.test(part) ? ':id' : part))
    .join('/');
  return `${request.method} ${path}`;
}

function addMeta(sql: string, result: { meta?: Partial<D1Meta> } | undefined): void {
  const m = meter().d1;
  const read = result?.meta?.rows_read ?? 0;
  const written = result?.meta?.rows_written ?? 0;
  m.statements++;
  m.rowsRead += read;
  m.rowsWritten += written;
  const bySql = (m.bySql[sql] ??= { calls: 0, rowsRead: 0, rowsWritten: 0 });
  bySql.calls++;
  bySql.rowsRead += read;
  bySql.rowsWritten += written;
}

const unwrapped = new WeakMap<object, { statement: D1PreparedStatement; sql: string }>();

function meterStatement(statement: D1PreparedStatement, sql: string): D1PreparedStatement {
  const metered = {
    bind: (...values: unknown[]) => meterStatement(statement.bind(...values), sql),
    async first(column?: string) {
      const result = await statement.all<Record<string, unknown>>();
      addMeta(sql, result);
      const row = result.results[0] ?? null;
      return column === undefined ? row : (row?.[column] ?? null);
    },
    async all() {
      const result = await statement.all();
      addMeta(sql, result);
      return result;
    },
    async run() {
      const result = await statement.run();
      addMeta(sql, result);
      return result;
    },
    raw(options?: { columnNames?: boolean }) {
      meter().d1.unmetered++;
      return statement.raw(options as { columnNames: true });
    },
  };
  unwrapped.set(metered, { statement, sql });
  return metered as unknown as D1PreparedStatement;
}

function meterD1(db: D1Database): D1Database {
  return new Proxy(db, {
    get(target, property) {
      if (property === 'prepare') return (query: string) => meterStatement(target.prepare(query), query.replace(/\s+/g, ' ').trim());
      if (property === 'batch') {
        return async (statements: D1PreparedStatement[]) => {
          meter().d1.batches++;
          const results = await target.batch(statements.map((s) => unwrapped.get(s)?.statement ?? s));
          for (const [i, result] of results.entries()) addMeta(unwrapped.get(statements[i]!)?.sql ?? '(unknown)', result);
          return results;
        };
      }
      if (property === 'exec') {
        return (query: string) => {
          meter().d1.unmetered++;
          return target.exec(query);
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const R2_CLASS: Record<string, 'classA' | 'classB' | 'free'> = {
  put: 'classA',
  list: 'classA',
  createMultipartUpload: 'classA',
  uploadPart: 'classA',
  complete: 'classA',
  get: 'classB',
  head: 'classB',
  delete: 'free',
  abort: 'free',
};

/** Wraps an R2 bucket or multipart upload: each billed call is counted by its class. */
function meterR2<T extends object>(target: T): T {
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== 'function') return value;
      const name = String(property);
      return (...args: unknown[]) => {
        const kind = R2_CLASS[name];
        if (kind) {
          const m = meter().r2;
          m[kind]++;
          bump(m.byOperation, name);
        }
        const result = (value as (...a: unknown[]) => unknown).apply(object, args);
        // createMultipartUpload answers an upload; resumeMultipartUpload one with no request.
        if (name === 'createMultipartUpload') return (result as Promise<object>).then((upload) => meterR2(upload));
        if (name === 'resumeMultipartUpload') return meterR2(result as object);
        return result;
      };
    },
  });
}

/** Wraps a Durable Object namespace: each call on one of its stubs is one request. */
function meterDurableObjects<T extends object>(namespace: T): T {
  const meterStub = (stub: object) =>
    new Proxy(stub, {
      get(object, property) {
        const value: unknown = Reflect.get(object, property, object);
        if (typeof property !== 'string' || property === 'then' || typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          bump(meter().durableObjectRequests, property);
          return Reflect.apply(value as (...a: unknown[]) => unknown, object, args);
        };
      },
    });
  return new Proxy(namespace, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== 'function') return value;
      if (property === 'get' || property === 'getByName') return (...args: unknown[]) => meterStub(Reflect.apply(value, object, args) as object);
      return value.bind(object);
    },
  });
}

// One metered env per env object, so the bindings keep one identity across requests (the group
// commit of edge/batch-together.ts keys its queue on the D1 binding).
const meteredEnvs = new WeakMap<Env, Env>();
function metered(env: Env): Env {
  let wrapped = meteredEnvs.get(env);
  if (!wrapped) {
    wrapped = { ...env, DB: meterD1(env.DB), FILES: meterR2(env.FILES), WORK_SIGNAL: meterDurableObjects(env.WORK_SIGNAL) };
    meteredEnvs.set(env, wrapped);
  }
  return wrapped;
}

/** The master's wake-up object, with the same meters on its bindings. */
export class WorkSignal extends MasterWorkSignal {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, metered(env));
  }
}

export default {
  fetch(request, env, ctx) {
    const url = new URL(request.url);
    instance ??= crypto.randomUUID();
    if (url.pathname === '/__bench/meter') return Response.json({ instance, meters });
    if (url.pathname === '/__bench/meter/reset' && request.method === 'POST') {
      meters = {};
      return new Response(null, { status: 204 });
    }
    const name = request.headers.get('x-bench-role') ?? 'farm';
    return role.run(name, () => {
      bump(meter().requests, routeOf(request));
      return master.fetch(request, metered(env), ctx);
    });
  },
  scheduled(controller, env, ctx) {
    return role.run('cron', () => {
      bump(meter().requests, 'scheduled');
      return master.scheduled(controller, metered(env), ctx);
    });
  },
} satisfies ExportedHandler<Env>;
