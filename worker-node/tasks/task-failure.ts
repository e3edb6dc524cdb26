/**
 * A task that cannot be done for a reason the node knows, reported to the master as `failed`
 * with `reason` as its failure_reason (e.g. `input_missing`, `stitch_failed`, `video_failed`).
 */
export class TaskFailure extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TaskFailure';
    this.reason = reason;
  }
}
