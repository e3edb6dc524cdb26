/**
 * Watches what the local master writes to its storage: every SQLite file under the persist
 * dir's `v3/` (D1, each Durable Object, R2's metadata). Shared by test/e2e/idle.test.ts and the
 * benchmarks (bench/lib.ts re-exports it).
 *
 * It never holds a connection to workerd's files: workerd's SQLite does not see another
 * process's locks, and may truncate a -shm file that a reader here has mapped, which kills the
 * reader with SIGBUS (seen with a connection held open on every file). The commit counter is read
 * with plain reads of the -shm header, and the tables are read from a copy of the database and
 * its WAL (SQLite recovers the copy's last whole commit from the WAL; a torn copy is retried).
 *
 * Two counts, because under `wrangler dev` they differ:
 *
 * - *commits*: every transaction that wrote the file, from the WAL index's commit counter
 *   (`iChange` in the -shm header, +1 per commit). Exact however close commits are. Local D1
 *   commits once per query, whatever the query does: workerd bumps a local-development bookmark
 *   row (`_cf_METADATA`) on every call, and a local Durable Object records its name
 *   (`__miniflare_do_name`) when it starts. So this counts D1 queries more than writes.
 * - *data commits*: the commits that changed a table other than that bookkeeping, which is what
 *   a deployed D1 or Durable Object bills as writes. When the commit counter moved, every
 *   non-bookkeeping table is read and compared row by row with the last look. Commits that fall
 *   between two looks (`tablesEveryMs`, 10 ms by default) count once, so under load this is a
 *   lower bound; the idle writes it exists for are seconds apart. Which tables changed, and how
 *   many of their rows, is kept per file.
 *
 * Files only `wrangler dev` has (its request-trace store, miniflare's own metadata) are shown
 * apart and counted in neither.
 */
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readdirSync, readSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

/** Tables of local bookkeeping that a deployed master does not write (see the top of this file). */
const LOCAL_BOOKKEEPING_TABLES = /^(_cf_|__miniflare_|sqlite_)/;

type Database = import('node:sqlite').DatabaseSync;

interface WatchedFile {
  /** The path under `v3/`, e.g. `d1/miniflare-D1DatabaseObject/<hash>.sqlite`. */
  label: string;
  kind: string;
  localOnly: boolean;
  path: string;
  shmPath: string;
  /** The WAL index's commit counter at the last poll; null before the file has a -shm. */
  iChange: number | null;
  /** Commits seen since the tables were last read. */
  unread: boolean;
  /** Per table (bookkeeping left out), its rows at the last look: rowid -> the row as JSON. */
  tables: Map<string, Map<string, string>>;
  commits: number;
  pollsWithCommits: number;
  dataCommits: number;
  /** Per table: how many looks found it changed, and how many of its rows had changed. */
  tablesChanged: Map<string, { commits: number; rows: number }>;
}

interface StorageFileWrites {
  label: string;
  /** `d1`, `durable object <class>`, `r2 metadata`, or `local: ...` (see `storageKind`). */
  kind: string;
  localOnly: boolean;
  commits: number;
  pollsWithCommits: number;
  dataCommits: number;
  /** Per table, the data commits that changed it (a commit can change several) and the rows they inserted, changed or deleted. */
  tablesChanged: Record<string, { commits: number; rows: number }>;
}

export interface StorageWrites {
  /** Commits to the master's D1, Durable Objects and R2 metadata (WAL commit counter; exact). */
  commits: number;
  /** Polls of the commit counter that saw it move (commits closer together than a poll count once). */
  pollsWithCommits: number;
  /** Commits among them that changed data other than local bookkeeping: what a deployed master bills as writes (a lower bound under load). */
  dataCommits: number;
  /** Rows those commits inserted, changed or deleted (not the indexes a deployed D1 also bills; a row changed twice within one poll counts once). */
  rowsChanged: number;
  /** Commits to files only a local `wrangler dev` has (trace store, miniflare's metadata): in neither count above. */
  localOnlyCommits: number;
  /** Per file that was written. */
  byFile: StorageFileWrites[];
}

export interface StorageWatcher {
  /** What was written since the watcher started (or since the last `reset`). */
  read(): StorageWrites;
  /** Starts counting again from zero. */
  reset(): void;
  stop(): void;
}

// node:sqlite is flagged experimental on Node 22 and warns once when loaded; the warning says nothing to a reader of the results.
function loadSqlite(): typeof import('node:sqlite') {
  const emitWarning = process.emitWarning;
  process.emitWarning = (() => {}) as typeof process.emitWarning;
  try {
    return createRequire(import.meta.url)('node:sqlite') as typeof import('node:sqlite');
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** The WAL index header's `iChange` (bytes 8-11 of the -shm file, native byte order): +1 per commit. */
function readWalCommitCounter(shmPath: string): number | null {
  let fd: number | undefined;
  try {
    fd = openSync(shmPath, 'r');
    const header = Buffer.alloc(96);
    if (readSync(fd, header, 0, 96, 0) < 96) return null;
    // SQLite writes the header twice (copy 2 first); readers trust it when both copies agree.
    if (!header.subarray(0, 48).equals(header.subarray(48, 96)) || header[12] !== 1) return null;
    return header.readUInt32LE(8);
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function sqliteFiles(dir: string): string[] {
  try {
    return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.sqlite')).map((f) => join(dir, f));
  } catch {
    return [];
  }
}

/**
 * What one of the master's SQLite files is: `d1`, `durable object <class>`, `r2 metadata`, or
 * `local: ...` for files a deployed master does not have (miniflare's own bookkeeping, the local
 * trace store that records every request).
 */
function storageKind(label: string): string {
  const [kind, namespace, file] = label.split(/[\\/]/);
  if (file === 'metadata.sqlite') return `local: miniflare metadata (${kind})`;
  if (kind === 'd1') return 'd1';
  if (kind === 'r2') return 'r2 metadata';
  if (kind === 'do') return `durable object ${namespace?.replace(/^.*-/, '') ?? ''}`;
  return `local: ${kind}`;
}

const jsonOfRow = (_key: string, value: unknown) =>
  typeof value === 'bigint' ? String(value) : value instanceof Uint8Array ? Buffer.from(value).toString('base64') : value;

/**
 * Every table's rows, bookkeeping tables left out: rowid -> the row as JSON (by position for a
 * table without rowid), read from a copy of the database and its WAL in `scratch`. A full read of
 * every table: cheap for the master's tables while nodes wait (a row per node, a few jobs), and
 * only done after a commit. Null when the copy could not be read (torn by a checkpoint).
 */
function readTables(DatabaseSync: typeof import('node:sqlite').DatabaseSync, path: string, scratch: string): Map<string, Map<string, string>> | null {
  const copy = join(scratch, 'copy.sqlite');
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${copy}${suffix}`, { force: true });
  let db: Database | undefined;
  try {
    copyFileSync(path, copy);
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
    db = new DatabaseSync(copy);
    const out = new Map<string, Map<string, string>>();
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[];
    for (const { name } of tables) {
      if (LOCAL_BOOKKEEPING_TABLES.test(name)) continue;
      const quoted = `"${name.replaceAll('"', '""')}"`;
      let rows: Record<string, unknown>[];
      try {
        rows = db.prepare(`SELECT rowid AS "__rowid", * FROM ${quoted}`).all() as Record<string, unknown>[];
      } catch {
        rows = (db.prepare(`SELECT * FROM ${quoted}`).all() as Record<string, unknown>[]).map((row, i) => ({ __rowid: i, ...row }));
      }
      out.set(name, new Map(rows.map(({ __rowid, ...row }) => [String(__rowid), JSON.stringify(row, jsonOfRow)])));
    }
    return out;
  } catch {
    return null; // being written or checkpointed: the next look reads it again
  } finally {
    db?.close();
  }
}

/** Rows inserted, changed or deleted between two reads of a table. */
function rowsChangedBetween(before: Map<string, string> = new Map(), after: Map<string, string> = new Map()): number {
  let changed = 0;
  for (const [rowid, row] of after) if (before.get(rowid) !== row) changed++;
  for (const rowid of before.keys()) if (!after.has(rowid)) changed++;
  return changed;
}

/**
 * Starts watching the SQLite files under `<persistDir>/v3`: the commit counters every `everyMs`,
 * the tables of a file that committed at most every `tablesEveryMs`. Files that appear while it
 * runs (a Durable Object's first start) are found by a rescan every half second and counted from
 * their first commit; what they hold when found is their starting point.
 */
export function watchStorage(persistDir: string, options: { everyMs?: number; tablesEveryMs?: number } = {}): StorageWatcher {
  const { everyMs = 10, tablesEveryMs = 10 } = options;
  const { DatabaseSync } = loadSqlite();
  const root = join(persistDir, 'v3');
  const scratch = mkdtempSync(join(tmpdir(), 'storage-watch-'));
  const files = new Map<string, WatchedFile>();
  // Files there at the start are counted from now; files created later, from their first commit.
  const initial = new Set(sqliteFiles(root));
  const watch = (path: string) => {
    if (files.has(path)) return;
    const label = relative(root, path);
    const kind = storageKind(label);
    const localOnly = kind.startsWith('local');
    let tables = new Map<string, Map<string, string>>();
    if (!localOnly) {
      const read = readTables(DatabaseSync, path, scratch);
      if (read === null) return; // being created: the next rescan tries again
      tables = read;
    }
    const shmPath = `${path}-shm`;
    // A file without a -shm yet starts its counter at 0 when it gets one.
    const iChange = !initial.has(path) || !existsSync(shmPath) ? 0 : readWalCommitCounter(shmPath);
    files.set(path, {
      label,
      kind,
      localOnly,
      path,
      shmPath,
      iChange,
      unread: false,
      tables,
      commits: 0,
      pollsWithCommits: 0,
      dataCommits: 0,
      tablesChanged: new Map(),
    });
  };
  for (const path of initial) watch(path);
  const pollCounters = () => {
    for (const file of files.values()) {
      const iChange = readWalCommitCounter(file.shmPath);
      if (iChange === null) continue;
      // The counter restarts when the WAL index is rebuilt: count from there.
      if (file.iChange !== null && iChange !== file.iChange) {
        file.commits += iChange > file.iChange ? iChange - file.iChange : iChange;
        file.pollsWithCommits++;
        file.unread = true;
      }
      file.iChange = iChange;
    }
  };
  const lookAtTables = () => {
    for (const file of files.values()) {
      if (!file.unread || file.localOnly) continue;
      const now = readTables(DatabaseSync, file.path, scratch);
      if (now === null) continue; // torn copy: the next look tries again
      file.unread = false;
      let changedData = false;
      for (const table of new Set([...now.keys(), ...file.tables.keys()])) {
        const rows = rowsChangedBetween(file.tables.get(table), now.get(table));
        if (rows === 0) continue;
        changedData = true;
        const sum = file.tablesChanged.get(table) ?? { commits: 0, rows: 0 };
        sum.commits++;
        sum.rows += rows;
        file.tablesChanged.set(table, sum);
      }
      if (changedData) file.dataCommits++;
      file.tables = now;
    }
  };
  const poll = () => {
    pollCounters();
    lookAtTables();
  };
  const counterTimer = setInterval(pollCounters, everyMs);
  const tablesTimer = setInterval(lookAtTables, tablesEveryMs);
  const scanTimer = setInterval(() => {
    for (const path of sqliteFiles(root)) watch(path);
  }, 500);
  return {
    read() {
      poll();
      const byFile: StorageFileWrites[] = [...files.values()]
        .filter((f) => f.commits > 0)
        .map((f) => ({
          label: f.label,
          kind: f.kind,
          localOnly: f.localOnly,
          commits: f.commits,
          pollsWithCommits: f.pollsWithCommits,
          dataCommits: f.dataCommits,
          tablesChanged: Object.fromEntries([...f.tablesChanged].map(([table, sum]) => [table, { ...sum }])),
        }));
      const billed = byFile.filter((f) => !f.localOnly);
      const sum = (key: 'commits' | 'pollsWithCommits' | 'dataCommits', of = billed) => of.reduce((total, f) => total + f[key], 0);
      return {
        commits: sum('commits'),
        pollsWithCommits: sum('pollsWithCommits'),
        dataCommits: sum('dataCommits'),
        rowsChanged: billed.reduce((total, f) => total + Object.values(f.tablesChanged).reduce((n, t) => n + t.rows, 0), 0),
        localOnlyCommits: sum(
          'commits',
          byFile.filter((f) => f.localOnly),
        ),
        byFile,
      };
    },
    reset() {
      poll();
      for (const file of files.values()) {
        file.commits = 0;
        file.pollsWithCommits = 0;
        file.dataCommits = 0;
        file.tablesChanged.clear();
      }
    },
    stop() {
      clearInterval(counterTimer);
      clearInterval(tablesTimer);
      clearInterval(scanTimer);
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

/** Prints `StorageWrites.byFile` summed by kind of storage, with the tables (and rows) the data commits changed. */
export function reportWritesByKind(writes: StorageWrites, indent = '    '): void {
  const byKind = new Map<string, { commits: number; dataCommits: number; tables: Map<string, { commits: number; rows: number }> }>();
  for (const f of writes.byFile) {
    const sum = byKind.get(f.kind) ?? { commits: 0, dataCommits: 0, tables: new Map() };
    sum.commits += f.commits;
    sum.dataCommits += f.dataCommits;
    for (const [table, n] of Object.entries(f.tablesChanged)) {
      const t = sum.tables.get(table) ?? { commits: 0, rows: 0 };
      t.commits += n.commits;
      t.rows += n.rows;
      sum.tables.set(table, t);
    }
    byKind.set(f.kind, sum);
  }
  if (byKind.size === 0) console.log(`${indent}no commits`);
  for (const [kind, sum] of byKind) {
    const tables = [...sum.tables].map(([t, n]) => `${t}: ${n.commits} commits, ${n.rows} rows`).join('; ');
    const data = kind.startsWith('local') ? 'not counted' : `${sum.dataCommits} changed data${tables ? ` (${tables})` : ''}`;
    console.log(`${indent}${kind.padEnd(32)} ${String(sum.commits).padStart(6)} commits, ${data}`);
  }
}
