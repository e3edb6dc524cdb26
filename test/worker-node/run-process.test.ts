/** The child-process runner the render node uses for Blender. */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { formatCommandLine, runProcess } from '../../worker-node/process/run-process.ts';

const NODE = process.execPath;

/** A node child that runs `steps` in order, `gapMs` apart, so the order of output is fixed. */
function scriptedChild(steps: string[], gapMs = 40): string[] {
  const body = steps.map((step, i) => `setTimeout(() => { ${step} }, ${i * gapMs});`).join('\n');
  return ['-e', body];
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ESRCH');
    return false;
  }
}

/** Pids of the processes in process group `pgid`, zombies excluded. */
function groupMembers(pgid: number): number[] {
  expect(pgid).toBeGreaterThan(1);
  const ps = spawnSync('ps', ['-e', '-o', 'pid=,pgid=,stat='], { encoding: 'utf8' });
  return ps.stdout
    .split('\n')
    .map((row) => row.trim().split(/\s+/))
    .filter(([, group, stat]) => Number(group) === pgid && stat !== undefined && !stat.startsWith('Z'))
    .map(([pid]) => Number(pid));
}

/** Waits (up to 2 s) until the group led by the pid that `pgid()` returns has `count` live members. */
async function waitForGroupOf(count: number, pgid: () => number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (pgid() > 1 && groupMembers(pgid()).length === count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  expect(groupMembers(pgid())).toHaveLength(count);
}

describe('runProcess', () => {
  it('merges stdout and stderr into lines, splitting on \\n, \\r\\n and \\r even across chunks, and keeps a last line without a newline', async () => {
    const lines: string[] = [];
    const result = await runProcess(
      NODE,
      scriptedChild([
        `process.stdout.write('one\\r\\ntw')`,
        `process.stdout.write('o\\n')`,
        `process.stderr.write('from stderr\\n')`,
        // A \r\n split between two writes must not produce an empty line.
        `process.stdout.write('three\\r')`,
        `process.stdout.write('\\nSample 1/4\\rSample 4/4\\n')`,
        `process.stdout.write('\\n')`,
        `process.stdout.write('no newline at the end')`,
      ]),
      { onLine: (line) => lines.push(line) },
    );
    expect(lines).toEqual(['one', 'two', 'from stderr', 'three', 'Sample 1/4', 'Sample 4/4', '', 'no newline at the end']);
    expect(result.tail).toEqual(lines);
    expect(result).toMatchObject({ exitCode: 0, signal: null, aborted: false });
  });

  it('decodes a UTF-8 character split between two chunks', async () => {
    const lines: string[] = [];
    // "é" is 0xC3 0xA9; the two bytes arrive in separate writes.
    await runProcess(NODE, scriptedChild([`process.stdout.write(Buffer.from([0x63, 0x61, 0x66, 0xc3]))`, `process.stdout.write(Buffer.from([0xa9, 0x0a]))`]), {
      onLine: (line) => lines.push(line),
    });
    expect(lines).toEqual(['café']);
  });

  it('returns a non-zero exit code instead of rejecting, with only the last tailLines lines', async () => {
    const script = `for (let i = 1; i <= 250; i++) console.log('line ' + i); process.exitCode = 3;`;
    const byDefault = await runProcess(NODE, ['-e', script]);
    expect(byDefault.exitCode).toBe(3);
    expect(byDefault.signal).toBeNull();
    expect(byDefault.tail).toHaveLength(100);
    expect(byDefault.tail[0]).toBe('line 151');
    expect(byDefault.tail.at(-1)).toBe('line 250');

    const short = await runProcess(NODE, ['-e', script], { tailLines: 3 });
    expect(short.tail).toEqual(['line 248', 'line 249', 'line 250']);
  });

  it('reports the signal that ended the child', async () => {
    const result = await runProcess(NODE, ['-e', `process.kill(process.pid, 'SIGKILL')`]);
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGKILL', aborted: false });
  });

  it('passes arguments without a shell, so quotes, spaces and $ reach the child untouched', async () => {
    const args = ["it's", 'a b', '$HOME', '`id`', 'frame_####', ''];
    const result = await runProcess(NODE, ['-e', 'console.log(JSON.stringify(process.argv.slice(1)))', ...args]);
    expect(JSON.parse(result.tail[0]!)).toEqual(args);
  });

  it('aborting kills the whole process group, grandchildren included, and waits for it', async () => {
    const controller = new AbortController();
    let pgid = 0;
    const running = runProcess('sh', ['-c', 'sleep 30 & sleep 30; wait'], {
      signal: controller.signal,
      onStart: (pid) => (pgid = pid),
    });
    // Wait until sh has started both sleeps, so there really is a grandchild to kill.
    await waitForGroupOf(3, () => pgid);

    controller.abort();
    const result = await running;
    expect(result.aborted).toBe(true);
    expect(result.signal).toBe('SIGTERM');
    expect(result.durationMs).toBeLessThan(5_000);
    expect(groupMembers(pgid)).toEqual([]);
    expect(groupAlive(pgid)).toBe(false);
  });

  it('sends SIGKILL to a process group that ignores SIGTERM once the grace period is over', async () => {
    const controller = new AbortController();
    let pgid = 0;
    // Ignored signals stay ignored across exec, so the sleeps ignore SIGTERM as well.
    const running = runProcess('sh', ['-c', `trap '' TERM; sleep 30 & sleep 30; wait`], {
      signal: controller.signal,
      killGraceMs: 300,
      onStart: (pid) => (pgid = pid),
    });
    await waitForGroupOf(3, () => pgid);
    const abortedAtMs = performance.now();
    controller.abort();
    const result = await running;
    expect(performance.now() - abortedAtMs).toBeGreaterThanOrEqual(300);
    expect(result).toMatchObject({ aborted: true, signal: 'SIGKILL', exitCode: null });
    expect(groupAlive(pgid)).toBe(false);
  });

  it('does not start the process when the signal is already aborted', async () => {
    let started = false;
    const result = await runProcess(NODE, ['-e', ''], { signal: AbortSignal.abort(), onStart: () => (started = true) });
    expect(started).toBe(false);
    expect(result).toMatchObject({ aborted: true, exitCode: null, signal: null });
  });

  it('rejects with the command line when the executable does not exist', async () => {
    await expect(runProcess('/nonexistent/blender', ['-b', 'x y.blend'])).rejects.toThrow(
      /starting \/nonexistent\/blender -b 'x y\.blend': spawn \/nonexistent\/blender ENOENT/,
    );
  });

  it('appends the command line, every output line and the exit status to logPath, creating its folder', async () => {
    const dir = tempDir('run-process');
    const logPath = join(dir, 'logs', 'deep', 'task.log');
    await runProcess(NODE, ['-e', `console.log('first run'); console.error('oops')`], { logPath });
    await runProcess(NODE, ['-e', `console.log('second run'); process.exitCode = 2`], { logPath });
    const log = readFileSync(logPath, 'utf8').split('\n');
    expect(log[0]).toMatch(/^# \d{4}-\d\d-\d\dT.* \$ .*node -e /);
    expect(log).toContain('first run');
    expect(log).toContain('oops');
    expect(log).toContain('second run');
    expect(log.filter((l) => l.startsWith('# exit code 0 signal null'))).toHaveLength(1);
    expect(log.filter((l) => l.startsWith('# exit code 2 signal null'))).toHaveLength(1);
    expect(log.indexOf('first run')).toBeLessThan(log.indexOf('second run'));
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('formatCommandLine', () => {
  it('quotes only what needs quoting', () => {
    expect(formatCommandLine('/usr/bin/blender', ['-b', '/w/a.blend', '-o', '/w/out/frame_######', '-f', '1,3,5..9'])).toBe(
      "/usr/bin/blender -b /w/a.blend -o '/w/out/frame_######' -f 1,3,5..9",
    );
    expect(formatCommandLine('blender', ['', "it's", 'a b'])).toBe(`blender '' 'it'\\''s' 'a b'`);
  });

  it('gives a line that a POSIX shell turns back into the same arguments', () => {
    const args = ["it's", 'two words', '$HOME', '`id`', 'a"b', 'back\\slash', 'frame_####', '', '*', 'tab\there', 'new\nline'];
    const line = formatCommandLine(NODE, ['-e', 'console.log(JSON.stringify(process.argv.slice(1)))', ...args]);
    const shell = spawnSync('sh', ['-c', line], { encoding: 'utf8' });
    expect(shell.status).toBe(0);
    expect(JSON.parse(shell.stdout)).toEqual(args);
  });
});
