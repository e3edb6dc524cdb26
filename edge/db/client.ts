import { drizzle } from 'drizzle-orm/d1';
import * as schema from './schema.ts';

/** A drizzle client over the D1 binding. Cheap: create one per request. */
export function openDb(d1: D1Database) {
  return drizzle(d1, { schema });
}
export type Db = ReturnType<typeof openDb>;
