/**
 * Group commit for D1: batches that requests of this isolate send while another batch is on its
 * way are sent together, as ONE batch (one round trip, one transaction), as soon as it is back.
 * Under load, many claims then cost one round trip instead of one each; an idle master sends
 * each batch at once, as before.
 *
 * A D1 batch runs its statements in order in one transaction, so each caller's statements still
 * run one after the other and see everything the callers before them wrote: the claims of one
 * group can never take the same frames. Should the group fail, no statement of it was committed
 * (the transaction rolled back), and each caller runs its own statements again alone, so one
 * caller's failing statement fails only that caller.
 *
 * Workers' rules shape the hand-over: a request may only do I/O in its own context. The caller
 * leading a group runs its batch in its own request, writes each caller's results into that
 * caller's slot and names the first caller still waiting as the next leader. Waiting callers look
 * at their slot on a short timer of their own, so each carries on in its own request (a promise
 * settled from another request's context is not guaranteed to continue in the right one, and a
 * request that waits on nothing of its own is cancelled as hung). Each caller keeps its wait
 * and its lead alive with waitUntil, so a client that hangs up cannot strand the others. Should a
 * leader still never finish (its request killed mid-batch), the caller first in line takes the
 * lead after STALL_MS: two groups may then be on their way at once, which D1 runs one after the
 * other, and each caller is still in exactly one group.
 */

/** Statements per group at most (about 20 claims); the rest wait for the next round. */
const MAX_STATEMENTS = 200;

/** How often a waiting caller looks at its slot: a batch takes a few milliseconds. */
const POLL_MS = 1;

/** How long a group may be on its way before the caller first in line leads the next one anyway. */
const STALL_MS = 10_000;

export interface BatchOptions {
  /** The request's: keeps this caller's wait and lead going after its client hangs up. */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** STALL_MS unless set (tests). */
  stallMs?: number;
}

type Turn = { lead: true } | { results: D1Result[] } | { alone: true };

interface Waiter {
  statements: D1PreparedStatement[];
  /** Written by the leader: what this caller does next. */
  turn: Turn | null;
}

interface Queue {
  busy: boolean;
  stallMs: number;
  /** When the group on its way was sent. */
  sentAt: number;
  waiting: Waiter[];
}

const queues = new WeakMap<D1Database, Queue>();

/** The database as a request sees it: the same D1 binding, whose `batch` is `batchTogether`. */
export function groupCommitting(db: D1Database, options: BatchOptions = {}): D1Database {
  return new Proxy(db, {
    get(target, property) {
      if (property === 'batch') return (statements: D1PreparedStatement[]) => batchTogether(target, statements, options);
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** `db.batch(statements)`, sent together with the batches of other callers that arrive meanwhile. */
export function batchTogether(db: D1Database, statements: D1PreparedStatement[], options: BatchOptions = {}): Promise<D1Result[]> {
  let q = queues.get(db);
  if (!q) queues.set(db, (q = { busy: false, stallMs: options.stallMs ?? STALL_MS, sentAt: 0, waiting: [] }));
  const done = takeTurn(db, q, statements);
  options.waitUntil?.(done.catch(() => {}));
  return done;
}

async function takeTurn(db: D1Database, q: Queue, statements: D1PreparedStatement[]): Promise<D1Result[]> {
  const me: Waiter = { statements, turn: null };
  q.waiting.push(me);
  if (!q.busy) {
    q.busy = true;
    me.turn = { lead: true };
  }
  while (!me.turn) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (!me.turn && q.waiting[0] === me && Date.now() - q.sentAt > q.stallMs) me.turn = { lead: true };
  }
  const turn: Turn = me.turn;
  if ('results' in turn) return turn.results;
  if ('alone' in turn) return db.batch(statements);
  return lead(db, q);
}

/** Runs the next group (its leader first), hands the results out and the lead on; answers the leader's results. */
async function lead(db: D1Database, q: Queue): Promise<D1Result[]> {
  const group: Waiter[] = [];
  let count = 0;
  while (q.waiting.length > 0 && (group.length === 0 || count + q.waiting[0]!.statements.length <= MAX_STATEMENTS)) {
    const next = q.waiting.shift()!;
    group.push(next);
    count += next.statements.length;
  }
  const [self, ...others] = group;
  q.sentAt = Date.now();
  try {
    if (others.length === 0) return await db.batch(self!.statements);
    let results: D1Result[];
    try {
      results = await db.batch(group.flatMap((w) => w.statements));
    } catch {
      // Nothing of the group was committed: each runs its own statements again, alone.
      for (const w of others) w.turn = { alone: true };
      return await db.batch(self!.statements);
    }
    let at = self!.statements.length;
    for (const w of others) w.turn = { results: results.slice(at, (at += w.statements.length)) };
    return results.slice(0, self!.statements.length);
  } finally {
    const next = q.waiting[0];
    if (next) next.turn = { lead: true };
    else q.busy = false;
  }
}
