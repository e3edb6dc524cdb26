/**
 * What a task that works on the job's inputs rather than rendering (stitch, video) is given:
 * the master to fetch its inputs from and send its result to, under the task's lease.
 */
import type { TaskAssignment } from '../../protocol/schemas.ts';
import type { FramePreviews } from '../frame-preview.ts';
import type { MasterClient } from '../master-client.ts';

export interface InputTaskContext {
  task: TaskAssignment;
  client: MasterClient;
  workerId: string;
  blender: string;
  /** The job's .blend in the cache: its scene says the render size and the frame rate. */
  blendPath: string;
  /** The task's own empty folder, removed when the task ends. */
  dir: string;
  /** The task's log, uploaded with the report; ffmpeg writes its output here. */
  logPath: string;
  /** Aborts on cancel, shutdown or a lost lease. */
  signal: AbortSignal;
  /** Adds a line to the task's log. */
  note: (line: string) => void;
  previews?: FramePreviews;
}

/** Runs the task's work; resolves with the message of the completed report. */
export type InputTask = (ctx: InputTaskContext) => Promise<string>;
