/** The node refuses to start misconfigured, and says what to fix. */
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../worker-node/config.ts';

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
    const dir = mkdtempSync(join(tmpdir(), 'farm-cfg-'));
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
});
