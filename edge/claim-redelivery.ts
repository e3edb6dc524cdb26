/**
 * `get_job` made idempotent. A node sends a fresh `claim_id` with each request for work and the
 * same one on every retry of that request. The master uses it as the lease id of what it claims,
 * so when the answer is lost on the way (a reset connection after the claim was committed) the
 * retry finds the claim by its lease id and gets it again, instead of the claim sitting leased to
 * a node that does not know about it until the lease runs out and costs the task an attempt.
 * The claim itself does the finding, in the same batch (db/claims.ts).
 */
/**
 * The newest `get_job` of each node, in this isolate. A node has one request for work open at a
 * time, so when a newer one arrives (a retry after a reset connection, or the node restarted)
 * the older one is abandoned: its client is gone, and a claim it made would sit leased to a node
 * that never hears of it. A superseded long poll stops waiting (within a second, see
 * work-signal.ts `waitForWork`) and claims nothing. This lives in the isolate's memory: with
 * several isolates it is best effort, and a superseded poll elsewhere ends when its wait does.
 */
const newestPoll = new Map<string, object>();

/** Registers a request for work; the returned function says whether it is still the newest. */
export function startPoll(workerId: string): { isNewest: () => boolean; end: () => void } {
  const token = {};
  newestPoll.set(workerId, token);
  return {
    isNewest: () => newestPoll.get(workerId) === token,
    end: () => {
      if (newestPoll.get(workerId) === token) newestPoll.delete(workerId);
    },
  };
}
