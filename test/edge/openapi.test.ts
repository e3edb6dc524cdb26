/**
 * The API description and the pages: `/openapi.json` lists exactly the routes the app serves,
 * with the schemas that validate requests; the schemas of the answers match what the master
 * really sends (so the typed client in protocol/client.ts can trust them); `/docs` is served.
 * (The dashboard's files are static assets, which only a real `wrangler dev` serves:
 * test/e2e/dashboard.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  frameListResponseSchema,
  jobControlResponseSchema,
  jobListResponseSchema,
  taskListResponseSchema,
  updateJobSchema,
  workerListResponseSchema,
  blocklistResponseSchema,
  webhookStatusSchema,
} from '../../protocol/api.ts';
import { jobStatusSchema } from '../../protocol/schemas.ts';
import { app } from '../../edge/app.ts';
import { OPERATIONS, openApiPath } from '../../edge/openapi.ts';
import { call, claim, emptyFarm, json, postJson, registerWorker, renderAll, submitOk } from './helpers.ts';

type Spec = {
  openapi: string;
  servers: { url: string }[];
  paths: Record<
    string,
    Record<string, { requestBody?: { content: Record<string, { schema: Record<string, unknown> }> }; security: unknown[]; responses: Record<string, unknown> }>
  >;
  components: { schemas: Record<string, unknown> };
  webhooks: Record<string, unknown>;
};

const appRoutes = () => [...new Set(app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`))].sort();

describe('GET /openapi.json', () => {
  it('documents exactly the routes the app serves (a new route must be added to edge/openapi.ts)', async () => {
    const documented = OPERATIONS.map((o) => `${o.method.toUpperCase()} ${o.path}`).sort();
    expect(documented).toEqual(appRoutes());
    const spec = await json<Spec>(await call('/openapi.json'), 200);
    expect(spec.openapi).toBe('3.1.0');
    expect(spec.servers).toEqual([{ url: 'http://farm.localhost' }]);
    const served = Object.entries(spec.paths)
      .flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    expect(served).toEqual(
      appRoutes()
        .map((r) => openApiPath(r))
        .sort(),
    );
  });

  it('request bodies are the JSON Schema of the zod schemas that validate them', async () => {
    const spec = await json<Spec>(await call('/openapi.json'), 200);
    const patch = spec.paths['/jobs/{job_id}']!.patch!.requestBody!.content['application/json']!.schema;
    const { $schema: _, ...expected } = z.toJSONSchema(updateJobSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    expect(patch).toEqual(expected);
    expect(patch).toMatchObject({ properties: { priority: { type: 'integer', minimum: 0, maximum: 100 } }, additionalProperties: false });
    const submit = spec.paths['/submit_job']!.post!.requestBody!.content['multipart/form-data']!.schema;
    expect(submit).toMatchObject({
      properties: { blend_file: { type: 'string', format: 'binary' }, start_frame: { type: 'number' }, end_frame: { type: 'number' } },
      required: ['blend_file', 'start_frame', 'end_frame'],
    });
    expect(spec.components.schemas.JobStatus).toMatchObject({
      properties: { status: { enum: ['queued', 'running', 'paused', 'completed', 'failed', 'canceled'] } },
    });
    expect(spec.webhooks.jobFinished).toBeDefined();
  });

  it('marks public routes as needing no token and every other route as taking a bearer token', async () => {
    const spec = await json<Spec>(await call('/openapi.json'), 200);
    expect(spec.paths['/time']!.get!.security).toEqual([]);
    expect(spec.paths['/openapi.json']!.get!.security).toEqual([]);
    expect(spec.paths['/jobs/{job_id}/cancel']!.post!.security).toEqual([{ bearer: [] }]);
  });
});

describe('the answers match their schemas (what the typed client relies on)', () => {
  it('jobs, frames, tasks, blocklist, nodes, control and webhook answers parse with their schemas, with no undocumented field', async () => {
    await emptyFarm();
    const job = await submitOk({ start_frame: 1, end_frame: 2, chunk_size: 1 });
    const node = await registerWorker('schema-node');
    await renderAll(node, await claim(node));
    await claim(node);
    const strictly = <T extends z.ZodObject>(schema: T, body: unknown): z.infer<T> => schema.strict().parse(body) as z.infer<T>;
    strictly(jobStatusSchema, await json(await call(`/job_status/${job.job_id}`), 200));
    strictly(jobListResponseSchema, await json(await call('/jobs'), 200));
    const frames = strictly(frameListResponseSchema, await json(await call(`/jobs/${job.job_id}/frames`), 200));
    expect(frames.frames).toHaveLength(1);
    for (const frame of frames.frames) frameListResponseSchema.shape.frames.element.strict().parse(frame);
    const tasks = strictly(taskListResponseSchema, await json(await call(`/jobs/${job.job_id}/tasks`), 200));
    for (const task of tasks.tasks) taskListResponseSchema.shape.tasks.element.strict().parse(task);
    strictly(blocklistResponseSchema, await json(await call(`/jobs/${job.job_id}/blocklist`), 200));
    const workers = strictly(workerListResponseSchema, await json(await call('/workers'), 200));
    for (const worker of workers.workers) workerListResponseSchema.shape.workers.element.strict().parse(worker);
    strictly(jobControlResponseSchema, await json(await postJson(`/jobs/${job.job_id}/pause`, {}), 200));
    strictly(webhookStatusSchema, await json(await call(`/jobs/${job.job_id}/webhook`), 200));
  });
});

describe('pages', () => {
  it('GET /docs renders every operation of the document as HTML', async () => {
    const res = await call('/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await res.text();
    for (const op of OPERATIONS) expect(html, op.path).toContain(`<code>${openApiPath(op.path)}</code>`);
    expect(html).toContain('href="/openapi.json"');
    expect(html).toContain('priority');
  });
});
