/**
 * The OpenAPI 3.1 document of the master, built from the zod schemas that validate requests
 * (`z.toJSONSchema`), so the document cannot drift from what the master accepts. Every route the
 * app registers must be listed in OPERATIONS: test/edge/openapi.test.ts compares the two.
 * Who may call an operation comes from the same table the auth middleware uses (edge/auth.ts).
 */
import { z } from 'zod';
import {
  blocklistResponseSchema,
  deleteJobResponseSchema,
  frameListResponseSchema,
  jobControlResponseSchema,
  jobListResponseSchema,
  requeueResponseSchema,
  taskListResponseSchema,
  updateJobSchema,
  webhookPayloadSchema,
  webhookStatusSchema,
  workerControlResponseSchema,
  workerInfoSchema,
  workerListResponseSchema,
} from '../protocol/api.ts';
import { manifestResponseSchema, manifestSchema } from '../protocol/manifest.ts';
import {
  HEADER_LEASE_ID,
  HEADER_RENDER_MS,
  HEADER_SHA256,
  HEADER_WORKER_ID,
  blobInfoSchema,
  createJobSchema,
  errorResponseSchema,
  getJobSchema,
  jobStatusSchema,
  listFramesQuerySchema,
  listJobsQuerySchema,
  registerWorkerResponseSchema,
  registerWorkerSchema,
  startUploadSchema,
  submitJobFieldsSchema,
  submitJobResponseSchema,
  taskAssignmentSchema,
  updateTaskStatusResponseSchema,
  updateTaskStatusSchema,
  uploadPartResponseSchema,
  uploadResultFieldsSchema,
  uploadResultResponseSchema,
  uploadStateSchema,
} from '../protocol/schemas.ts';
import { routeAccess } from './auth.ts';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
type JsonSchema = Record<string, unknown>;

interface ResponseDoc {
  description: string;
  /** JSON body described by a schema. */
  schema?: z.ZodType;
  /** Any other body: its media type. */
  contentType?: string;
}

type BodyDoc =
  | { json: z.ZodType }
  | { multipart: z.ZodObject | z.ZodType; files: Record<string, string>; required: string[] }
  | { raw: string; description: string };

export interface OperationDoc {
  method: Method;
  /** As registered with Hono: `/jobs/:job_id`. */
  path: string;
  tag: string;
  summary: string;
  description?: string;
  query?: z.ZodObject;
  headers?: Record<string, { description: string; required?: boolean }>;
  body?: BodyDoc;
  responses: Record<number, ResponseDoc>;
}

const leaseHeaders = {
  [HEADER_WORKER_ID]: { description: 'the node that holds the lease', required: true },
  [HEADER_LEASE_ID]: { description: 'the lease the node holds on the task', required: true },
};

/** Every route of the master, grouped by what people use it for. */
export const OPERATIONS: OperationDoc[] = [
  // ---- Jobs: submit and read
  {
    method: 'post',
    path: '/submit_job',
    tag: 'Jobs',
    summary: 'Submit a .blend and a frame range (multipart)',
    description:
      "The seed API. The file is streamed into storage as it arrives, in any order of the parts; a body is capped by MAX_UPLOAD_BYTES (the plan's request body limit, 100 MB on Free and Pro). Larger files go through /blobs and POST /jobs (`farm submit`). `frames` (a frame list: 1-100x5, 1,5,10-20) replaces start_frame and end_frame, which may then be left out.",
    body: { multipart: submitJobFieldsSchema, files: { blend_file: 'the .blend file' }, required: ['blend_file', 'start_frame', 'end_frame'] },
    responses: { 201: { description: 'the job was queued', schema: submitJobResponseSchema } },
  },
  {
    method: 'post',
    path: '/jobs',
    tag: 'Jobs',
    summary: 'Create a job from an uploaded blob (.blend, project .zip or project manifest)',
    body: { json: createJobSchema },
    responses: { 201: { description: 'the job was queued', schema: submitJobResponseSchema } },
  },
  {
    method: 'get',
    path: '/job_status/:job_id',
    tag: 'Jobs',
    summary: "A job's progress, ETA and errors",
    responses: { 200: { description: 'the job', schema: jobStatusSchema } },
  },
  {
    method: 'get',
    path: '/jobs',
    tag: 'Jobs',
    summary: 'Jobs, newest first',
    query: listJobsQuerySchema,
    responses: { 200: { description: 'one page of jobs; pass next_cursor as cursor for the next', schema: jobListResponseSchema } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id',
    tag: 'Jobs',
    summary: 'A job (same answer as job_status)',
    responses: { 200: { description: 'the job', schema: jobStatusSchema } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/tasks',
    tag: 'Jobs',
    summary: 'The frame ranges nodes claimed: state, node, attempts, log',
    responses: { 200: { description: 'the tasks, by first frame', schema: taskListResponseSchema } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/tasks/:task_id/log',
    tag: 'Jobs',
    summary: "The full Blender log of a task's latest attempt",
    responses: { 200: { description: 'the log', contentType: 'text/plain' } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/blocklist',
    tag: 'Jobs',
    summary: "Nodes that failed this job's tasks",
    responses: { 200: { description: 'the nodes and whether they are blocked from the job', schema: blocklistResponseSchema } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/storage',
    tag: 'Jobs',
    summary: "A job's frames as D1 records them, checked against what R2 holds",
    responses: { 200: { description: 'the audit' } },
  },
  // ---- Frames
  {
    method: 'get',
    path: '/jobs/:job_id/frames',
    tag: 'Frames',
    summary: 'Rendered frames with size, SHA-256 and preview',
    query: listFramesQuerySchema,
    responses: { 200: { description: 'one page of frames; pass next_after as after for the next', schema: frameListResponseSchema } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/frames/:frame',
    tag: 'Frames',
    summary: 'One frame, as Blender wrote it',
    description: `The \`${HEADER_SHA256}\` header carries its SHA-256.`,
    responses: { 200: { description: 'the image', contentType: 'application/octet-stream' } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/frames/:frame/preview',
    tag: 'Frames',
    summary: 'A small JPEG of one frame, made by the node',
    responses: {
      200: { description: 'the preview', contentType: 'image/jpeg' },
      404: { description: 'no preview: show the frame itself', schema: errorResponseSchema },
    },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/frames.zip',
    tag: 'Frames',
    summary: 'Every frame in one ZIP, streamed',
    responses: { 200: { description: 'the archive', contentType: 'application/zip' } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/video',
    tag: 'Frames',
    summary: 'The H.264 preview video (jobs submitted with preview_video), with Range',
    responses: {
      200: { description: 'the video', contentType: 'video/mp4' },
      206: { description: 'the requested range', contentType: 'video/mp4' },
      404: { description: 'not made (yet)', schema: errorResponseSchema },
    },
  },
  // ---- Job control
  {
    method: 'post',
    path: '/jobs/:job_id/pause',
    tag: 'Job control',
    summary: 'Pause: no new frames are handed out; frames being rendered finish',
    responses: {
      200: { description: 'the job after the change', schema: jobControlResponseSchema },
      409: { description: 'the job is finished', schema: errorResponseSchema },
    },
  },
  {
    method: 'post',
    path: '/jobs/:job_id/resume',
    tag: 'Job control',
    summary: 'Resume a paused or canceled job',
    responses: {
      200: { description: 'the job after the change', schema: jobControlResponseSchema },
      409: { description: 'the job is completed or failed', schema: errorResponseSchema },
    },
  },
  {
    method: 'post',
    path: '/jobs/:job_id/cancel',
    tag: 'Job control',
    summary: 'Cancel: nodes rendering it are told to stop at their next renewal',
    responses: {
      200: { description: 'the job after the change', schema: jobControlResponseSchema },
      409: { description: 'the job is completed or failed', schema: errorResponseSchema },
    },
  },
  {
    method: 'post',
    path: '/jobs/:job_id/requeue_failed',
    tag: 'Job control',
    summary: 'Failed frame ranges go back to the queue with fresh attempts',
    responses: { 200: { description: 'how many tasks were requeued', schema: requeueResponseSchema } },
  },
  {
    method: 'patch',
    path: '/jobs/:job_id',
    tag: 'Job control',
    summary: "Change a job's priority or webhook",
    body: { json: updateJobSchema },
    responses: { 200: { description: 'the job after the change', schema: jobControlResponseSchema } },
  },
  {
    method: 'delete',
    path: '/jobs/:job_id',
    tag: 'Job control',
    summary: 'Delete a job with its frames, previews and logs',
    description:
      'The job answers 404 at once and its nodes are told to stop; its frames, previews, logs and rows are removed by the cron ' +
      'a page at a time (`deleted_objects` is 0). Its input (.blend or .zip) is stored by content and may serve other jobs: ' +
      'it is kept, and deleted once no job has used it for INPUT_RETENTION_DAYS.',
    responses: { 200: { description: 'what was deleted', schema: deleteJobResponseSchema } },
  },
  {
    method: 'get',
    path: '/jobs/:job_id/webhook',
    tag: 'Job control',
    summary: "Where the job's webhook notification stands",
    description: 'When the job completes or fails, the master POSTs a WebhookPayload to the URL (see webhooks), retrying with backoff.',
    responses: { 200: { description: 'the delivery state', schema: webhookStatusSchema } },
  },
  // ---- Nodes
  {
    method: 'get',
    path: '/workers',
    tag: 'Nodes',
    summary: 'Render nodes: state, current task, devices, frames rendered, failures',
    responses: { 200: { description: 'the nodes', schema: workerListResponseSchema } },
  },
  {
    method: 'get',
    path: '/workers/:worker_id',
    tag: 'Nodes',
    summary: 'One render node',
    responses: { 200: { description: 'the node', schema: workerInfoSchema } },
  },
  {
    method: 'post',
    path: '/workers/:worker_id/drain',
    tag: 'Nodes',
    summary: 'Drain: no new work; the current task finishes',
    responses: { 200: { description: 'the node after the change', schema: workerControlResponseSchema } },
  },
  {
    method: 'post',
    path: '/workers/:worker_id/disable',
    tag: 'Nodes',
    summary: 'Disable: no new work; the current task goes back to the queue now',
    responses: { 200: { description: 'the node after the change', schema: workerControlResponseSchema } },
  },
  {
    method: 'post',
    path: '/workers/:worker_id/enable',
    tag: 'Nodes',
    summary: 'Enable a drained or disabled node',
    responses: { 200: { description: 'the node after the change', schema: workerControlResponseSchema } },
  },
  // ---- Render node protocol
  {
    method: 'post',
    path: '/register_worker',
    tag: 'Render node protocol',
    summary: 'Register (or re-register) a render node',
    body: { json: registerWorkerSchema },
    responses: { 201: { description: 'the node id and lease length', schema: registerWorkerResponseSchema } },
  },
  {
    method: 'post',
    path: '/get_job',
    tag: 'Render node protocol',
    summary: 'Claim work (long poll with wait_ms)',
    body: { json: getJobSchema },
    responses: { 200: { description: 'a task to render', schema: taskAssignmentSchema }, 204: { description: 'no work now (a normal answer)' } },
  },
  {
    method: 'post',
    path: '/update_task_status',
    tag: 'Render node protocol',
    summary: 'Renew a lease, or report a task completed, failed or released',
    body: { json: updateTaskStatusSchema },
    responses: { 200: { description: 'the task', schema: updateTaskStatusResponseSchema } },
  },
  {
    method: 'post',
    path: '/upload_result',
    tag: 'Render node protocol',
    summary: 'Upload a frame (multipart, the seed API)',
    body: { multipart: uploadResultFieldsSchema, files: { file: 'the rendered image' }, required: ['worker_id', 'task_id', 'lease_id', 'frame', 'file'] },
    responses: { 201: { description: 'the stored frame', schema: uploadResultResponseSchema } },
  },
  {
    method: 'put',
    path: '/tasks/:task_id/frames/:frame',
    tag: 'Render node protocol',
    summary: 'Upload a frame (raw body, streamed to storage)',
    headers: {
      ...leaseHeaders,
      [HEADER_SHA256]: { description: 'hex SHA-256 of the body; storage verifies it' },
      [HEADER_RENDER_MS]: { description: 'render time of the frame in ms' },
    },
    body: { raw: 'application/octet-stream', description: 'the image; `?ext=png` names its type' },
    responses: { 201: { description: 'the stored frame', schema: uploadResultResponseSchema } },
  },
  {
    method: 'put',
    path: '/tasks/:task_id/frames/:frame/preview',
    tag: 'Render node protocol',
    summary: "Upload a frame's preview (JPEG or PNG, up to 2 MiB)",
    headers: leaseHeaders,
    body: { raw: 'image/jpeg', description: 'a small JPEG (or PNG) of a frame uploaded before' },
    responses: { 201: { description: 'the preview was stored' } },
  },
  {
    method: 'put',
    path: '/tasks/:task_id/log',
    tag: 'Render node protocol',
    summary: "Upload a task attempt's Blender log (raw body)",
    headers: leaseHeaders,
    body: { raw: 'text/plain', description: 'the log' },
    responses: { 201: { description: 'the log was stored' } },
  },
  {
    method: 'put',
    path: '/tasks/:task_id/output',
    tag: 'Render node protocol',
    summary: "Upload a tile task's PNG or a video task's MP4 (raw body)",
    headers: { ...leaseHeaders, [HEADER_SHA256]: { description: 'hex SHA-256 of the body; R2 verifies it' } },
    body: { raw: 'image/png', description: 'the tile (image/png) or the preview video (video/mp4)' },
    responses: {
      201: { description: 'the output was stored' },
      409: { description: 'the lease is not current, or the task is not a tile or video task', schema: errorResponseSchema },
      415: { description: 'the Content-Type does not fit the task', schema: errorResponseSchema },
    },
  },
  {
    method: 'get',
    path: '/tasks/:task_id/inputs/:n',
    tag: 'Render node protocol',
    summary: "A stitch task's tile n, or a video task's frame n",
    headers: leaseHeaders,
    responses: { 200: { description: 'the tile or frame', contentType: 'image/png' }, 404: { description: 'not stored', schema: errorResponseSchema } },
  },
  {
    method: 'get',
    path: '/download_blend/:name',
    tag: 'Render node protocol',
    summary: "Download a job's input (.blend or .zip), with Range",
    responses: {
      200: { description: 'the file', contentType: 'application/octet-stream' },
      206: { description: 'the requested range', contentType: 'application/octet-stream' },
    },
  },
  // ---- Blobs
  {
    method: 'get',
    path: '/blobs/:sha256',
    tag: 'Blobs',
    summary: 'A stored blob (HEAD: whether it exists)',
    responses: { 200: { description: 'the file', contentType: 'application/octet-stream' } },
  },
  {
    method: 'post',
    path: '/blobs/:sha256/uploads',
    tag: 'Blobs',
    summary: 'Start or resume a chunked upload',
    body: { json: startUploadSchema },
    responses: { 200: { description: 'the upload in progress', schema: uploadStateSchema }, 201: { description: 'a new upload', schema: uploadStateSchema } },
  },
  {
    method: 'put',
    path: '/blobs/:sha256/uploads/:upload_id/parts/:n',
    tag: 'Blobs',
    summary: 'Store one part (raw body)',
    body: { raw: 'application/octet-stream', description: 'part n of the file' },
    responses: { 200: { description: 'the stored part', schema: uploadPartResponseSchema } },
  },
  {
    method: 'post',
    path: '/blobs/:sha256/uploads/:upload_id/complete',
    tag: 'Blobs',
    summary: 'Verify the SHA-256 and record the blob',
    responses: { 201: { description: 'the blob', schema: blobInfoSchema }, 200: { description: 'completed before', schema: blobInfoSchema } },
  },
  {
    method: 'delete',
    path: '/blobs/:sha256/uploads/:upload_id',
    tag: 'Blobs',
    summary: 'Abort an upload',
    responses: { 200: { description: 'aborted' } },
  },
  {
    method: 'post',
    path: '/manifests',
    tag: 'Blobs',
    summary: 'Store a project manifest; answers the blobs the master lacks',
    description:
      'A project file by file: its files (path, SHA-256, size) and the .blend to render, stored by the hash of its canonical text. Upload the missing blobs, then POST /jobs with kind "manifest" and blob_sha256 the manifest_sha256.',
    body: { json: manifestSchema },
    responses: { 200: { description: 'the manifest hash and the missing blobs', schema: manifestResponseSchema } },
  },
  {
    method: 'get',
    path: '/manifests/:sha256/files/:blob',
    tag: 'Render node protocol',
    summary: 'One file a manifest lists, by its SHA-256, with Range',
    responses: { 200: { description: 'the file', contentType: 'application/octet-stream' } },
  },
  // ---- The master itself
  {
    method: 'get',
    path: '/time',
    tag: 'Meta',
    summary: "The master's clock",
    responses: { 200: { description: 'ISO time and epoch ms', schema: z.object({ time: z.string(), epoch_ms: z.number() }) } },
  },
  {
    method: 'get',
    path: '/openapi.json',
    tag: 'Meta',
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1', contentType: 'application/json' } },
  },
  {
    method: 'get',
    path: '/docs',
    tag: 'Meta',
    summary: 'This document as a web page',
    responses: { 200: { description: 'the page', contentType: 'text/html' } },
  },
  {
    method: 'get',
    path: '/addon.zip',
    tag: 'Meta',
    summary: 'The Blender add-on (install in Preferences > Add-ons > Install)',
    responses: { 200: { description: 'a zip with render_farm/ at its root', contentType: 'application/zip' } },
  },
];

/** `/jobs/:job_id` -> `/jobs/{job_id}`. */
export const openApiPath = (path: string) => path.replace(/:([A-Za-z_]+)/g, '{$1}');

/** JSON Schema of a zod schema: request bodies as accepted (input), answers as sent (output). */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const out = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
    // Answers may gain fields in later versions: clients should not reject unknown ones.
    override: (ctx) => {
      if (io === 'output' && ctx.jsonSchema.additionalProperties === false) delete ctx.jsonSchema.additionalProperties;
    },
  }) as JsonSchema;
  delete out.$schema;
  return out;
}

/** Shared answers, as components, referenced by name. */
const COMPONENTS: [string, z.ZodType][] = [
  ['JobStatus', jobStatusSchema],
  ['Error', errorResponseSchema],
  ['WebhookPayload', webhookPayloadSchema],
];

function responseSchema(schema: z.ZodType): JsonSchema {
  const named = COMPONENTS.find(([, s]) => s === schema);
  return named ? { $ref: `#/components/schemas/${named[0]}` } : jsonSchema(schema, 'output');
}

function requestBody(body: BodyDoc): JsonSchema {
  if ('json' in body) return { required: true, content: { 'application/json': { schema: jsonSchema(body.json, 'input') } } };
  if ('raw' in body) {
    return { required: true, description: body.description, content: { [body.raw]: { schema: { type: 'string', format: 'binary' } } } };
  }
  const fields = jsonSchema(body.multipart, 'input') as { properties?: Record<string, JsonSchema> };
  const properties: Record<string, JsonSchema> = { ...(fields.properties ?? {}) };
  for (const [name, description] of Object.entries(body.files)) properties[name] = { type: 'string', format: 'binary', description };
  return { required: true, content: { 'multipart/form-data': { schema: { type: 'object', properties, required: body.required } } } };
}

function operation(doc: OperationDoc): JsonSchema {
  const parameters: JsonSchema[] = [];
  for (const [, name] of doc.path.matchAll(/:([A-Za-z_]+)/g)) {
    parameters.push({ name, in: 'path', required: true, schema: { type: 'string' } });
  }
  if (doc.query) {
    const query = jsonSchema(doc.query, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
    for (const [name, schema] of Object.entries(query.properties ?? {})) {
      parameters.push({ name, in: 'query', required: query.required?.includes(name) ?? false, schema });
    }
  }
  for (const [name, header] of Object.entries(doc.headers ?? {})) {
    parameters.push({ name, in: 'header', required: header.required ?? false, description: header.description, schema: { type: 'string' } });
  }
  const responses: Record<string, JsonSchema> = {};
  for (const [status, response] of Object.entries(doc.responses)) {
    responses[status] = {
      description: response.description,
      ...(response.schema
        ? { content: { 'application/json': { schema: responseSchema(response.schema) } } }
        : response.contentType
          ? { content: { [response.contentType]: { schema: { type: 'string', format: 'binary' } } } }
          : {}),
    };
  }
  responses['4XX'] ??= {
    description: 'the request was refused; `error` says why and what to do',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  };
  const access = routeAccess(doc.method, doc.path);
  return {
    tags: [doc.tag],
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    operationId: `${doc.method}${openApiPath(doc.path).replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
    ...(parameters.length ? { parameters } : {}),
    ...(doc.body ? { requestBody: requestBody(doc.body) } : {}),
    responses,
    // Public routes need nothing; every other one takes a bearer token (see edge/auth.ts).
    security: access === 'public' ? [] : [{ bearer: [] }],
    'x-farm-access': access,
  };
}

/** The OpenAPI 3.1 document. `serverUrl` is where this master answers. */
export function buildOpenApi(serverUrl?: string): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const doc of OPERATIONS) {
    const path = openApiPath(doc.path);
    (paths[path] ??= {})[doc.method] = operation(doc);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Blender render farm master',
      version: '1',
      description:
        'Submit Blender jobs, watch and control them, and the protocol of the render nodes. Bodies and answers are JSON with ' +
        'snake_case fields; every error is {"error": "..."} with a 4xx status. With FARM_ALLOW_ANONYMOUS=true (local ' +
        'development) no token is needed, and only requests addressed to this machine (localhost) are served.',
    },
    ...(serverUrl ? { servers: [{ url: serverUrl }] } : {}),
    tags: [...new Set(OPERATIONS.map((o) => o.tag))].map((name) => ({ name })),
    paths,
    // Calls the master makes: a job's webhook when it completes or fails.
    webhooks: {
      jobFinished: {
        post: {
          summary: "A job completed or failed (sent to the job's webhook_url, retried with backoff until it answers 2xx)",
          description:
            'Deduplicate on X-Farm-Delivery (the same on every retry of one event). With FARM_WEBHOOK_SECRET set, verify ' +
            'X-Farm-Signature: sha256= and the hex HMAC-SHA256, keyed with the secret, of X-Farm-Timestamp, ".", and the raw body; ' +
            'refuse a timestamp more than 5 minutes old (docs/operations.md, Webhooks).',
          parameters: [
            { name: 'X-Farm-Event', in: 'header', required: true, schema: { type: 'string', enum: ['job.completed', 'job.failed'] } },
            { name: 'X-Farm-Delivery', in: 'header', required: true, description: "the event id, equal to the body's delivery_id", schema: { type: 'string' } },
            {
              name: 'X-Farm-Timestamp',
              in: 'header',
              required: false,
              description: 'Unix seconds when this attempt was signed (only when the master has FARM_WEBHOOK_SECRET)',
              schema: { type: 'string' },
            },
            {
              name: 'X-Farm-Signature',
              in: 'header',
              required: false,
              description: 'sha256=<hex HMAC-SHA256 of "<X-Farm-Timestamp>.<raw body>">',
              schema: { type: 'string' },
            },
          ],
          requestBody: { required: true, content: { 'application/json': { schema: responseSchema(webhookPayloadSchema) } } },
          responses: { 200: { description: 'any 2xx answer counts as delivered' } },
        },
      },
    },
    components: {
      schemas: Object.fromEntries(COMPONENTS.map(([name, schema]) => [name, jsonSchema(schema, 'output')])),
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a submitter token, or a node credential for node routes' } },
    },
  };
}
