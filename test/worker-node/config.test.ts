/** The node refuses to start misconfigured, and says what to fix. */
import { writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../temp-dirs.ts';
import { ConfigError, loadConfig, SETTINGS, USAGE } from '../../worker-node/config.ts';

describe('loadConfig', () => {
  it('without a master URL, explains both ways to give one', async () => {
    await expect(loadConfig([], { PATH: process.env.PATH })).rejects.toThrow(/--master .*FARM_MASTER_URL/);
  });

  it('with no Blender anywhere, says where it looked and how to install it', async () => {
    const err = await loadConfig(['--master', 'http://localhost:8000'], { PATH: '/nonexistent' }).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/Blender not found/);
    expect(err.message).toMatch(/\/nonexistent/);
    expect(err.message).toMatch(/apt-get install blender/);
    expect(err.message).toMatch(/--blender/);
  });

  it('with BLENDER pointing at a non-executable file, names the variable', async () => {
    const dir = tempDir('cfg');
    const fake = join(dir, 'blender');
    writeFileSync(fake, 'not a program');
    chmodSync(fake, 0o644);
    await expect(loadConfig(['--master', 'http://x:1'], { PATH: '', BLENDER: fake })).rejects.toThrow(/from BLENDER/);
  });

  it('rejects a bad thread count and an unknown flag', async () => {
    await expect(loadConfig(['--master', 'http://x:1', '--threads', '-2'], process.env)).rejects.toThrow(/--threads/);
    await expect(loadConfig(['--master', 'http://x:1', '--bogus'], process.env)).rejects.toThrow(/bogus/);
  });

  it('reads flags and the real Blender version', async () => {
    const config = await loadConfig(['--master', 'http://127.0.0.1:9/', '--name', 'n-1', '--threads', '2'], { PATH: process.env.PATH });
    if (config === 'help') throw new Error('unexpected help');
    expect(config).toMatchObject({ masterUrl: 'http://127.0.0.1:9', name: 'n-1', threads: 2 });
    expect(config.blenderVersion).toMatch(/^\d+\.\d+/);
  });

  it('renders in a hot Blender by default; --no-hot, --hot-max-frames and --hot-max-mem-mb change that', async () => {
    const defaults = await loadConfig(['--master', 'http://x:1'], { PATH: process.env.PATH });
    if (defaults === 'help') throw new Error('unexpected help');
    expect(defaults).toMatchObject({ hot: true, hotMaxFrames: 500 });
    expect(defaults.hotMaxMemMb).toBeGreaterThan(0);

    const set = await loadConfig(['--master', 'http://x:1', '--no-hot', '--hot-max-frames', '0', '--hot-max-mem-mb', '2048'], { PATH: process.env.PATH });
    if (set === 'help') throw new Error('unexpected help');
    expect(set).toMatchObject({ hot: false, hotMaxFrames: 0, hotMaxMemMb: 2048 });

    const fromEnv = await loadConfig(['--master', 'http://x:1'], { PATH: process.env.PATH, FARM_NO_HOT: '1', FARM_HOT_MAX_FRAMES: '20' });
    if (fromEnv === 'help') throw new Error('unexpected help');
    expect(fromEnv).toMatchObject({ hot: false, hotMaxFrames: 20 });
    await expect(loadConfig(['--master', 'http://x:1', '--hot-max-frames', 'lots'], { PATH: process.env.PATH })).rejects.toThrow(/--hot-max-frames/);
  });

  it('--tags / FARM_NODE_TAGS: comma-separated, trimmed, lower case; --gpu-slots / FARM_GPU_SLOTS: per-gpu by default, or single', async () => {
    const env = { PATH: process.env.PATH };
    const defaults = await loadConfig(['--master', 'http://x:1'], env);
    if (defaults === 'help') throw new Error('unexpected help');
    expect(defaults).toMatchObject({ tags: [], gpuSlots: 'per-gpu' });

    const set = await loadConfig(['--master', 'http://x:1', '--tags', ' GPU, big-mem,,gpu ', '--gpu-slots', 'single'], env);
    if (set === 'help') throw new Error('unexpected help');
    expect(set).toMatchObject({ tags: ['gpu', 'big-mem'], gpuSlots: 'single' });

    const fromEnv = await loadConfig(['--master', 'http://x:1'], { ...env, FARM_NODE_TAGS: 'studio-a', FARM_GPU_SLOTS: 'single' });
    if (fromEnv === 'help') throw new Error('unexpected help');
    expect(fromEnv).toMatchObject({ tags: ['studio-a'], gpuSlots: 'single' });

    await expect(loadConfig(['--master', 'http://x:1', '--tags', 'has space'], env)).rejects.toThrow(/a tag is 1 to 40 lowercase letters/);
    await expect(loadConfig(['--master', 'http://x:1', '--gpu-slots', 'two'], env)).rejects.toThrow(/--gpu-slots must be per-gpu or single/);
  });

  it('a bad value in a variable stops the node with an error naming the variable and the value, as a bad flag does', async () => {
    const env = { PATH: process.env.PATH };
    const refused = (vars: Record<string, string>) => loadConfig(['--master', 'http://x:1'], { ...env, ...vars });
    await expect(refused({ FARM_THREADS: '4x' })).rejects.toThrow(/^--threads \(FARM_THREADS\) must be a whole number from 0 to \d+ \(got "4x"\)$/);
    await expect(loadConfig(['--master', 'http://x:1', '--threads', '4x'], env)).rejects.toThrow(/^--threads must be a whole number/);
    await expect(refused({ FARM_NO_HOT: 'yes' })).rejects.toThrow('FARM_NO_HOT must be true or false (got "yes")');
    await expect(refused({ FARM_PREVIEWS: 'maybe' })).rejects.toThrow('FARM_PREVIEWS must be auto, on, off (got "maybe")');
    await expect(refused({ FARM_PROJECT_MAX_FILES: '10k' })).rejects.toThrow('FARM_PROJECT_MAX_FILES must be a whole number of at least 1 (got "10k")');
    const fine = await refused({ FARM_NO_HOT: 'false', FARM_PREVIEWS: 'off', FARM_PROJECT_MAX_FILES: '10' });
    if (fine === 'help') throw new Error('unexpected help');
    expect(fine.hot).toBe(true);
  });

  it('--help is written from the table the flags are parsed with: every flag it lists is accepted, with a value where it shows one', async () => {
    const listed = [...USAGE.matchAll(/^ {2}(--[\w-]+)( \S+)?/gm)].map((m) => ({ flag: m[1]!, takesValue: m[2] !== undefined }));
    expect(listed.map((l) => l.flag)).toEqual(Object.keys(SETTINGS).filter((k) => k.startsWith('--')));
    expect(listed.length).toBeGreaterThan(10);
    for (const { flag, takesValue } of listed) {
      expect(await loadConfig([flag, ...(takesValue ? ['x'] : []), '--help'], {}), flag).toBe('help');
    }
    // And the variables without a flag are in it too.
    for (const variable of ['FARM_PREVIEWS', 'FARM_PROJECT_MAX_FILES', 'FFMPEG']) expect(USAGE).toMatch(new RegExp(`^ {2}${variable} `, 'm'));
  });
});
