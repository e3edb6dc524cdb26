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
 * request that waits on nothing of its own is cancelled as hung). The leader keeps its batch
 * alive with waitUntil, so a client that hangs up cannot strand the callers in its group.
 */

/** Statements per group at most (about 20 claims); the rest wait for the next round. */
const MAX_STATEMENTS = 200;

/** How often a waiting caller looks at its slot: a batch takes a few milliseconds. */
const POLL_MS = 1;

/** How long a caller waits for its turn before it gives up with an error. */
const TURN_TIMEOUT_MS = 60_000;

type Turn = { lead: true } | { results: D1Result[] } | { alone: true };

interface Waiter {
  statements: D1PreparedStatement[];
  /** Written by the leader: what this caller does next. */
  turn: Turn | null;
}

interface Queue {
  busy: boolean;
  waiting: Waiter[];
}

const queues = new WeakMap<D1Database, Queue>();

/**
 * The database as a request sees it: the same D1 binding, whose `batch` is `batchTogether`.
 * `waitUntil` (the request's) keeps a group's batch running after a client hangs up.
 */
export function groupCommitting(db: D1Database, waitUntil?: (promise: Promise<unknown>) => void): D1Database {
  return new Proxy(db, {
    get(target, property) {
      if (property === 'batch') return (statements: D1PreparedStatement[]) => batchTogether(target, statements, waitUntil);
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * `db.batch(statements)`, sent together with the batches of other callers that arrive meanwhile.
 * `waitUntil` (the request's) keeps a group's batch running after a client hangs up.
 */
export async function batchTogether(
  db: D1Database,
  statements: D1PreparedStatement[],
  waitUntil?: (promise: Promise<unknown>) => void,
): Promise<D1Result[]> {
  let q = queues.get(db);
  if (!q) queues.set(db, (q = { busy: false, waiting: [] }));
  const me: Waiter = { statements, turn: null };
  q.waiting.push(me);
  if (!q.busy) {
    q.busy = true;
    me.turn = { lead: true };
  }
  const deadline = Date.now() + TURN_TIMEOUT_MS;
  while (!me.turn) {
    if (Date.now() > deadline) {
      const at = q.waiting.indexOf(me);
      // Still queued: leave the queue. Taken into a group already: its batch may yet commit.
      if (at >= 0) q.waiting.splice(at, 1);
      throw new Error(`D1 did not answer a batch within ${TURN_TIMEOUT_MS / 1000} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const turn: Turn = me.turn;
  if ('results' in turn) return turn.results;
  if ('alone' in turn) return db.batch(statements);
  const round = lead(db, q);
  waitUntil?.(round.catch(() => {}));
  return round;
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
