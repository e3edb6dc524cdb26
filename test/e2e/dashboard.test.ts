/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core, against a real
 * master (wrangler dev, which serves the dashboard's static assets as Cloudflare does) and a real
 * render node with real Blender. A job is submitted; its page shows thumbnails (the node's
 * previews) as frames arrive; it is paused and resumed from the page and reaches 100%. A job with
 * a frame list shows exactly its listed frames, paged by listed frames. Screenshots are kept in
 * test-output/.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameListResponse } from '../../protocol/api.ts';
import { jobStatus, makeScene, OUTPUT_DIR, startMaster, startNode, submitJob, tempDir, waitFor, type Master } from './harness.ts';

const FRAMES = 10;
const SUBMIT_TOKEN = 'dashboard-e2e-submitter-token';
const ENROL_TOKEN = 'dashboard-e2e-enrolment-token';

/**
 * The page's document, as far as these tests use it. Functions run in the page (Playwright sends
 * their source, which the page's CSP allows, unlike strings); the project's TypeScript has no DOM
 * types, hence this minimal shape.
 */
interface PageImage {
  complete: boolean;
  naturalWidth: number;
  src: string;
}
type PageVideo = { readyState: number; videoWidth: number };
type PageElement = { getAttribute(name: string): string | null };
type PageGlobal = { document: { querySelectorAll(selector: string): ArrayLike<PageImage>; querySelector(selector: string): PageVideo | null } };
const SCREENSHOTS = join(OUTPUT_DIR, 'dashboard');

/** Flags that keep Chromium headless and off the network (the machine has no internet). */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

describe('the dashboard in Chromium', () => {
  const dir = tempDir('e2e-dashboard');
  const scene = join(dir, 'anim.blend');
  let master: Master;
  /** A second master with tokens on, as deployed. */
  let securedMaster: Master;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    makeScene('make_anim_scene.py', [scene, '--frames', String(FRAMES), '--width', '96', '--height', '64']);
    [master, securedMaster, browser] = await Promise.all([
      startMaster({ name: 'dashboard' }),
      startMaster({ name: 'dashboard-tokens', vars: { FARM_ALLOW_ANONYMOUS: 'false', FARM_SUBMIT_TOKEN: SUBMIT_TOKEN, FARM_NODE_TOKEN: ENROL_TOKEN } }),
      chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, timeout: 60_000 }),
    ]);
    // The scene is small enough that the node would skip previews by default (the grid then shows the PNGs themselves).
    startNode({ name: 'dash-node', master: master.url, env: { FARM_PREVIEWS: 'on' } });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(60_000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
    page.on('response', (response) => {
      if (response.status() >= 400) pageErrors.push(`${response.status()} ${response.url()}`);
    });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('serves the page, its script and its styles as static assets, with their headers, to anyone; the API still asks for a token', async () => {
    const url = securedMaster.url;
    const shell = await fetch(`${url}/`);
    expect(shell.status).toBe(200);
    expect(shell.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(shell.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(shell.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await shell.text();
    expect(html).toContain('<script src="/dashboard.js" defer></script>');
    expect(html).toContain('lang="en"');
    const js = await fetch(`${url}/dashboard.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('content-security-policy')).toContain("default-src 'none'");
    const script = await js.text();
    // The built bundle: valid JavaScript, reading the API, building the DOM without innerHTML.
    expect(() => new Script(script, { filename: 'dashboard.js' })).not.toThrow();
    expect(script).toContain('/jobs?limit=100');
    expect(script).not.toContain('innerHTML');
    const css = await fetch(`${url}/dashboard.css`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(await css.text()).toContain('.frames');
    // The rules file is read by the asset server, not served: the request goes on to the Worker,
    // which wants a token there, as it does for the API.
    const rules = await fetch(`${url}/_headers`);
    expect(rules.status).toBe(401);
    expect(await rules.text()).not.toContain('Content-Security-Policy');
    expect((await fetch(`${url}/jobs`)).status).toBe(401);
  });

  it('shows a submitted job reaching 100% with thumbnails, after pausing and resuming it from the page', async () => {
    // One frame per task, so a pause takes effect after the frame being rendered.
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), {
      start_frame: 1,
      end_frame: FRAMES,
      chunk_size: 1,
      name: 'dashboard shot',
      preview_video: 'true',
    });

    // The job list links to the job.
    await page.goto(`${master.url}/`);
    const link = page.getByRole('link', { name: 'dashboard shot' });
    await link.waitFor();
    await link.click();
    await page.waitForURL(`**/#/jobs/${job.job_id}`);
    await page.getByRole('heading', { level: 1, name: 'dashboard shot' }).waitFor();

    // Thumbnails appear as frames arrive: a loaded image (the node's preview) in the frame grid.
    await page.waitForFunction(
      () => Array.from((globalThis as unknown as PageGlobal).document.querySelectorAll('.frames img')).some((img) => img.complete && img.naturalWidth > 0),
      null,
      { timeout: 120_000 },
    );

    // Pause from the page: the job is paused and no new frame is handed out.
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.locator('.job-status .badge', { hasText: 'paused' }).waitFor();
    expect((await jobStatus(master.url, job.job_id)).status).toBe('paused');
    expect(await page.getByRole('button', { name: 'Resume' }).isEnabled()).toBe(true);
    const settled = await waitFor(
      'the frame in hand to finish',
      async () => {
        const s = await jobStatus(master.url, job.job_id);
        return s.running_frames === 0 ? s : null;
      },
      60_000,
    );
    expect(settled.completed_frames).toBeLessThan(FRAMES);
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await jobStatus(master.url, job.job_id)).completed_frames).toBe(settled.completed_frames);
    await page.screenshot({ path: join(SCREENSHOTS, 'job-paused.png'), fullPage: true });

    // Resume from the page and watch it reach 100%.
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.locator('#job-percent', { hasText: '100.0%' }).waitFor({ timeout: 180_000 });
    await page.locator('.job-status .badge', { hasText: 'completed' }).waitFor();
    expect(await page.locator('#job-progress').getAttribute('value')).toBe('100');

    // Every frame has a thumbnail, and they are the node's previews (JPEG), loaded.
    await waitFor(
      'every frame to have its preview',
      async () => {
        const listed = (await (await fetch(`${master.url}/jobs/${job.job_id}/frames`)).json()) as FrameListResponse;
        return listed.frames.length === FRAMES && listed.frames.every((f) => f.preview_url !== null);
      },
      30_000,
    );
    await page.waitForFunction(
      (n) => {
        const imgs = Array.from((globalThis as unknown as PageGlobal).document.querySelectorAll('.frames img'));
        return imgs.length === n && imgs.every((img) => img.complete && img.naturalWidth > 0);
      },
      FRAMES,
      { timeout: 30_000 },
    );
    await page.waitForFunction(
      () => Array.from((globalThis as unknown as PageGlobal).document.querySelectorAll('.frames img')).every((img) => /\/frames\/\d+\/preview$/.test(img.src)),
      null,
      { timeout: 30_000 },
    );

    // The preview video is on the page, playable: Chromium read its metadata (H.264, one frame per frame).
    await page.waitForFunction(
      () => {
        const video = (globalThis as unknown as PageGlobal).document.querySelector('#preview-video');
        return video !== null && video.readyState >= 1 && video.videoWidth > 0;
      },
      null,
      { timeout: 30_000 },
    );
    expect(await page.getByRole('link', { name: 'Download the video' }).isVisible()).toBe(true);

    // The task table: one row per task (the frames, then the video), completed, with the node's name and a log button.
    const rows = page.locator('table.tasks tbody tr');
    expect(await rows.count()).toBe(FRAMES + 1);
    expect(await rows.last().textContent()).toMatch(new RegExp(`^video · 1–${FRAMES}`));
    expect(await rows.first().textContent()).toContain('dash-node');
    await page.getByRole('button', { name: 'Log of frames 1–1', exact: true }).click();
    await page.locator('#log-text', { hasText: 'Saved:' }).waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'job-log.png') });
    await page.getByRole('button', { name: 'Close' }).click();
    await page.screenshot({ path: join(SCREENSHOTS, 'job-completed.png'), fullPage: true });
  });

  it('the job list shows progress, and the nodes page shows the node with its frames', async () => {
    await page.goto(`${master.url}/#/`);
    const row = page.locator('table.jobs tbody tr', { hasText: 'dashboard shot' });
    await row.locator('text=100.0%').waitFor();
    expect(await row.locator('progress').getAttribute('aria-label')).toBe('Progress of dashboard shot');
    await page.screenshot({ path: join(SCREENSHOTS, 'jobs.png'), fullPage: true });
    // The add-on is one click away, and the link fetches the zip Blender installs.
    const addon = await page.getByRole('link', { name: 'Blender add-on' }).getAttribute('href');
    const zip = await fetch(new URL(addon!, master.url));
    expect(zip.headers.get('content-type')).toBe('application/zip');
    expect(Buffer.from(await zip.arrayBuffer()).subarray(0, 4)).toEqual(Buffer.from('PK\x03\x04', 'latin1'));

    await page.getByRole('link', { name: 'Nodes' }).click();
    const nodeRow = page.locator('table.nodes tbody tr', { hasText: 'dash-node' });
    await nodeRow.waitFor();
    expect(await nodeRow.textContent()).toMatch(/CPU: /);
    expect(await nodeRow.locator('td').nth(3).textContent()).toBe(String(FRAMES));
    await page.screenshot({ path: join(SCREENSHOTS, 'nodes.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('on a master with tokens, asks for a token, keeps it, and shows thumbnails fetched with it', async () => {
    const url = securedMaster.url;
    const auth = (token: string) => ({ authorization: `Bearer ${token}` });
    // The frame and preview of the first test stand in for a node's work here.
    const first = (await (await fetch(`${master.url}/jobs?limit=1`)).json()) as { jobs: { job_id: string }[] };
    const firstJob = first.jobs[0]!.job_id;
    const png = new Uint8Array(await (await fetch(`${master.url}/jobs/${firstJob}/frames/1`)).arrayBuffer());
    const jpeg = new Uint8Array(await (await fetch(`${master.url}/jobs/${firstJob}/frames/1/preview`)).arrayBuffer());

    const job = await submitJob(
      url,
      new Blob([readFileSync(scene)]),
      { start_frame: 1, end_frame: 2, chunk_size: 1, name: 'secured shot' },
      'scene.blend',
      SUBMIT_TOKEN,
    );
    const enrolled = (await (
      await fetch(`${url}/register_worker`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth(ENROL_TOKEN) },
        body: JSON.stringify({ name: 'fake-node' }),
      })
    ).json()) as { worker_id: string; node_token: string };
    const task = (await (
      await fetch(`${url}/get_job`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth(enrolled.node_token) },
        body: JSON.stringify({ worker_id: enrolled.worker_id }),
      })
    ).json()) as { task_id: string; lease_id: string };
    const lease = { ...auth(enrolled.node_token), 'x-farm-worker-id': enrolled.worker_id, 'x-farm-lease-id': task.lease_id };
    expect(
      (await fetch(`${url}/tasks/${task.task_id}/frames/1?ext=png`, { method: 'PUT', headers: { ...lease, 'content-length': String(png.length) }, body: png }))
        .status,
    ).toBe(201);
    expect(
      (
        await fetch(`${url}/tasks/${task.task_id}/frames/1/preview`, {
          method: 'PUT',
          headers: { ...lease, 'content-type': 'image/jpeg', 'content-length': String(jpeg.length) },
          body: jpeg,
        })
      ).status,
    ).toBe(201);

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const secured = await context.newPage();
    secured.setDefaultTimeout(60_000);
    await secured.goto(`${url}/`);
    // The API answered 401: the page asks for a token.
    const tokenInput = secured.getByLabel('API token');
    await tokenInput.waitFor();
    expect(await secured.locator('#token-message').textContent()).toContain('needs a token');
    await tokenInput.fill(SUBMIT_TOKEN);
    await secured.getByRole('button', { name: 'Save' }).click();
    await secured.getByRole('link', { name: 'secured shot' }).click();
    // The thumbnail came with the token, as a blob: URL (img tags cannot send headers).
    await secured.waitForFunction(
      () =>
        Array.from((globalThis as unknown as PageGlobal).document.querySelectorAll('.frames img')).some(
          (img) => img.complete && img.naturalWidth > 0 && img.src.startsWith('blob:'),
        ),
      null,
      { timeout: 60_000 },
    );
    await secured.getByRole('button', { name: 'Pause' }).click();
    await secured.locator('.job-status .badge', { hasText: 'paused' }).waitFor();
    expect((await jobStatus(url, job.job_id, SUBMIT_TOKEN)).status).toBe('paused');
    // The token is kept: a reload needs no new one.
    await secured.reload();
    await secured.locator('.job-status .badge', { hasText: 'paused' }).waitFor();
    expect(await secured.locator('#token-panel').isHidden()).toBe(true);
    await secured.screenshot({ path: join(SCREENSHOTS, 'job-with-token.png'), fullPage: true });
    await context.close();
  });

  it('a job with a frame list shows exactly its listed frames, with their numbers and thumbnails', async () => {
    const listed = ['1', '3', '5', '8', '10'];
    const job = await submitJob(master.url, new Blob([readFileSync(scene)]), { frames: '1-5x2,8,10', chunk_size: 1, name: 'listed shot' });
    expect(job.total_frames).toBe(listed.length);
    await page.goto(`${master.url}/#/jobs/${job.job_id}`);
    await page.locator('#job-percent', { hasText: '100.0%' }).waitFor({ timeout: 180_000 });
    await waitFor(
      'every listed frame to have its preview',
      async () => {
        const frames = (await (await fetch(`${master.url}/jobs/${job.job_id}/frames`)).json()) as FrameListResponse;
        return frames.frames.length === listed.length && frames.frames.every((f) => f.preview_url !== null);
      },
      30_000,
    );
    // One loaded thumbnail per listed frame, each the preview of its own frame.
    await page.waitForFunction(
      (n) => {
        const imgs = Array.from((globalThis as unknown as PageGlobal).document.querySelectorAll('.frames img'));
        return imgs.length === n && imgs.every((img) => img.complete && img.naturalWidth > 0 && /\/frames\/\d+\/preview$/.test(img.src));
      },
      listed.length,
      { timeout: 30_000 },
    );
    const cells = page.locator('.frames li');
    expect(await cells.locator('.frame-label').allTextContents()).toEqual(listed);
    // Runs in the page: the names come as its argument.
    const attrs = (els: unknown[], names: string[]) => els.map((el) => names.map((n) => (el as PageElement).getAttribute(n)));
    expect(await cells.evaluateAll(attrs, ['data-frame', 'data-state'])).toEqual(listed.map((f) => [f, 'done']));
    expect((await page.locator('.frames img').evaluateAll(attrs, ['src'])).map(([src]) => src!.replace(/^.*\/frames\//, ''))).toEqual(
      listed.map((f) => `${f}/preview`),
    );
    expect(await page.locator('.grid-note').textContent()).toBe('Frames 1–10 of the 5 listed (1-5x2,8,10).');
    expect(await page.locator('.pager').isHidden()).toBe(true);
    await page.screenshot({ path: join(SCREENSHOTS, 'job-frame-list.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('a long frame list is paged by its listed frames, not by the span from its first to its last', async () => {
    const url = securedMaster.url;
    // 1001 frames over 0-2000: three pages of 500, 500 and 1 (no node renders them here).
    const job = await submitJob(url, new Blob([readFileSync(scene)]), { frames: '0-2000x2', name: 'long list' }, 'scene.blend', SUBMIT_TOKEN);
    expect(job.total_frames).toBe(1001);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const paged = await context.newPage();
    paged.setDefaultTimeout(60_000);
    await paged.goto(`${url}/#/jobs/${job.job_id}`);
    await paged.getByLabel('API token').fill(SUBMIT_TOKEN);
    await paged.getByRole('button', { name: 'Save' }).click();
    const labels = paged.locator('.frames li .frame-label');
    const evens = (from: number, count: number) => Array.from({ length: count }, (_, i) => String(from + 2 * i));
    await paged.locator('.pager', { hasText: 'Page 1 of 3' }).waitFor();
    expect(await labels.allTextContents()).toEqual(evens(0, 500));
    expect(await paged.locator('.frames li.state-queued').count()).toBe(500);
    expect(await paged.locator('.grid-note').textContent()).toBe('Frames 0–998 of the 1001 listed (0-2000x2).');
    await paged.getByRole('button', { name: 'Next frames' }).click();
    await paged.locator('.pager', { hasText: 'Page 2 of 3' }).waitFor();
    await paged.locator('.frames li[data-frame="1000"]').waitFor();
    expect(await labels.allTextContents()).toEqual(evens(1000, 500));
    await paged.getByRole('button', { name: 'Next frames' }).click();
    await paged.locator('.pager', { hasText: 'Page 3 of 3' }).waitFor();
    await paged.locator('.frames li[data-frame="2000"]').waitFor();
    expect(await labels.allTextContents()).toEqual(['2000']);
    expect(await paged.getByRole('button', { name: 'Next frames' }).isDisabled()).toBe(true);
    await paged.screenshot({ path: join(SCREENSHOTS, 'job-frame-list-paged.png'), fullPage: true });
    await context.close();
  });
});
