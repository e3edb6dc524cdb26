/**
 * The master's one way to D1: a drizzle client over the request's binding (app.ts makes that
 * binding group-commit its batches, batch-together.ts, and drizzle's `batch` goes through it).
 *
 * Statements drizzle's query builder expresses are written with it; the others (subqueries over
 * json_each, CASE, UPDATE ... FROM-less correlated updates) are drizzle `sql` templates run with
 * `all`, `get` and `run` below, which type their rows and may join a typed `db.batch` like any
 * builder query.
 */
import { drizzle, type DrizzleD1Database } from 'drizzle-orm/d1';
import { sql, type SQL } from 'drizzle-orm';
import type { SQLiteRaw } from 'drizzle-orm/sqlite-core/query-builders/raw';

export type Db = DrizzleD1Database & { $client: D1Database };

const clients = new WeakMap<D1Database, Db>();

/** The drizzle client of a D1 binding; one per binding, so a request opens it once. */
export function openDb(d1: D1Database): Db {
  let db = clients.get(d1);
  if (!db) clients.set(d1, (db = drizzle(d1)));
  return db;
}

/**
 * A raw statement that can also go into `db.batch`: drizzle 0.45's D1 batch binds a raw
 * statement's parameters through a prepared statement it only makes for builder queries, so it is
 * made here.
 */
function batchable<T>(db: Db, raw: SQLiteRaw<T>): SQLiteRaw<T> {
  return Object.assign(raw, { stmt: db.$client.prepare(raw.getQuery().sql) });
}

/** Every row of a `sql` query (a SELECT, or a write with RETURNING). */
export function all<Row>(db: Db, query: SQL): SQLiteRaw<Row[]> {
  return batchable(db, db.all<Row>(query));
}

/** The first row of a `sql` query, or undefined. */
export function get<Row>(db: Db, query: SQL): SQLiteRaw<Row | undefined> {
  return batchable(db, db.get<Row | undefined>(query));
}

/** A `sql` write; its result says how many rows it changed (`meta.changes`). */
export function run(db: Db, query: SQL): SQLiteRaw<D1Result> {
  return batchable(db, db.run(query));
}

/** How many rows a write changed. */
export const changes = (result: D1Result): number => result.meta.changes ?? 0;

/**
 * A list of names known to the code (statuses, kinds) as an SQL list `('a', 'b')`: written into
 * the statement rather than bound, so the query planner sees constants, as the indexes want.
 */
export function names(values: readonly string[]): SQL {
  for (const v of values) if (!/^[a-z_]+$/.test(v)) throw new Error(`not a name: ${v}`);
  return sql.raw(`(${values.map((v) => `'${v}'`).join(', ')})`);
}

/** One name known to the code, as an SQL string constant (see `names`). */
export function name(value: string): SQL {
  if (!/^[a-z_]+$/.test(value)) throw new Error(`not a name: ${value}`);
  return sql.raw(`'${value}'`);
}

/**
 * SQL text that a string helper builds around a part (frame-ranges.ts and frame-order.ts write
 * column arithmetic as text), with `part`, which may bind parameters, where the helper put it.
 */
export function around(build: (part: string) => string, part: SQL): SQL {
  const marker = '\u0001';
  const pieces = build(marker).split(marker);
  return sql.join(pieces.flatMap((text, i) => (i === 0 ? [sql.raw(text)] : [part, sql.raw(text)])));
}
