/**
 * `GET /docs`: the OpenAPI document as a page people can read, rendered on the master from the
 * same document `GET /openapi.json` serves (no external viewer: the page works offline).
 */
type Json = Record<string, unknown>;

const escapeHtml = (value: unknown) =>
  String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A short type name for a JSON Schema: `string`, `number | null`, `array of Task`, `queued | running`. */
function typeName(schema: Json | undefined): string {
  if (!schema) return 'any';
  if (typeof schema.$ref === 'string') return schema.$ref.split('/').pop()!;
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (Array.isArray(schema.anyOf)) return (schema.anyOf as Json[]).map(typeName).join(' | ');
  const type = Array.isArray(schema.type) ? (schema.type as string[]).join(' | ') : String(schema.type ?? 'any');
  if (type === 'array') return `array of ${typeName(schema.items as Json)}`;
  if (schema.format === 'binary') return 'file';
  return type;
}

function constraints(schema: Json): string {
  const parts: string[] = [];
  if (schema.minimum !== undefined) parts.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) parts.push(`≤ ${schema.maximum}`);
  if (schema.maxLength !== undefined) parts.push(`up to ${schema.maxLength} characters`);
  if (schema.pattern !== undefined) parts.push(`matches ${schema.pattern}`);
  return parts.join(', ');
}

/** A table of an object schema's fields, one level deep. */
function fieldTable(schema: Json | undefined, components: Record<string, Json>): string {
  if (!schema) return '';
  if (typeof schema.$ref === 'string') schema = components[schema.$ref.split('/').pop()!] ?? schema;
  const properties = schema.properties as Record<string, Json> | undefined;
  if (!properties) return `<p>${escapeHtml(typeName(schema))}</p>`;
  const required = new Set((schema.required as string[] | undefined) ?? []);
  const rows = Object.entries(properties)
    .map(
      ([name, field]) =>
        `<tr><th scope="row"><code>${escapeHtml(name)}</code></th><td>${escapeHtml(typeName(field))}</td>` +
        `<td>${required.has(name) ? 'yes' : ''}</td><td>${escapeHtml([field.description, constraints(field)].filter(Boolean).join('; '))}</td></tr>`,
    )
    .join('');
  return `<table><thead><tr><th scope="col">field</th><th scope="col">type</th><th scope="col">required</th><th scope="col">notes</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** The HTML page for an OpenAPI document built by `buildOpenApi`. */
export function renderApiDocs(spec: Json): string {
  const info = spec.info as Json;
  const paths = spec.paths as Record<string, Record<string, Json>>;
  const components = ((spec.components as Json).schemas ?? {}) as Record<string, Json>;
  const byTag = new Map<string, string[]>();
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags as string[])[0]!;
      const id = String(op.operationId);
      const params = (op.parameters as Json[] | undefined) ?? [];
      const paramRows = params
        .map(
          (p) =>
            `<tr><th scope="row"><code>${escapeHtml(p.name)}</code></th><td>${escapeHtml(p.in)}</td><td>${escapeHtml(typeName(p.schema as Json))}</td>` +
            `<td>${p.required ? 'yes' : ''}</td><td>${escapeHtml([p.description, constraints((p.schema as Json) ?? {})].filter(Boolean).join('; '))}</td></tr>`,
        )
        .join('');
      const body = op.requestBody as Json | undefined;
      const bodyContent = body ? Object.entries(body.content as Record<string, Json>)[0] : undefined;
      const responses = Object.entries(op.responses as Record<string, Json>)
        .map(([status, r]) => {
          const content = r.content ? Object.entries(r.content as Record<string, Json>)[0] : undefined;
          const detail = content && content[0] === 'application/json' && status !== '4XX' ? fieldTable(content[1].schema as Json, components) : '';
          return `<li><strong>${escapeHtml(status)}</strong> ${escapeHtml(r.description)}${content ? ` <code>${escapeHtml(content[0])}</code>` : ''}${detail}</li>`;
        })
        .join('');
      const section =
        `<section class="op" id="${escapeHtml(id)}" aria-labelledby="${escapeHtml(id)}-h">` +
        `<h3 id="${escapeHtml(id)}-h"><span class="method method-${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h3>` +
        `<p>${escapeHtml(op.summary)}${op['x-farm-access'] ? ` <span class="access">(access: ${escapeHtml(op['x-farm-access'])})</span>` : ''}</p>` +
        (op.description ? `<p>${escapeHtml(op.description)}</p>` : '') +
        (paramRows
          ? `<h4>Parameters</h4><table><thead><tr><th scope="col">name</th><th scope="col">in</th><th scope="col">type</th><th scope="col">required</th><th scope="col">notes</th></tr></thead><tbody>${paramRows}</tbody></table>`
          : '') +
        (bodyContent
          ? `<h4>Body <code>${escapeHtml(bodyContent[0])}</code></h4>${escapeHtml(body!.description ?? '')}${fieldTable(bodyContent[1].schema as Json, components)}`
          : '') +
        `<h4>Answers</h4><ul>${responses}</ul></section>`;
      byTag.set(tag, [...(byTag.get(tag) ?? []), section]);
    }
  }
  const toc = [...byTag.keys()].map((tag) => `<li><a href="#tag-${escapeHtml(tag.replace(/\s+/g, '-'))}">${escapeHtml(tag)}</a></li>`).join('');
  const sections = [...byTag.entries()]
    .map(
      ([tag, ops]) =>
        `<section aria-labelledby="tag-${escapeHtml(tag.replace(/\s+/g, '-'))}"><h2 id="tag-${escapeHtml(tag.replace(/\s+/g, '-'))}">${escapeHtml(tag)}</h2>${ops.join('')}</section>`,
    )
    .join('');
  const payload = components.WebhookPayload;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>API · Render farm</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/dashboard.css">
</head><body>
<header><span class="brand">Render farm</span><nav aria-label="Main"><a href="/#/">Jobs</a><a href="/#/nodes">Nodes</a><a href="/docs" aria-current="page">API</a></nav></header>
<main id="main">
<h1>${escapeHtml(info.title)}</h1>
<p>${escapeHtml(info.description)}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${escapeHtml(spec.openapi)}). Send a token as <code>Authorization: Bearer &lt;token&gt;</code> where the master requires one.</p>
<nav aria-label="Sections"><ul>${toc}<li><a href="#webhooks">Webhooks</a></li></ul></nav>
${sections}
<section aria-labelledby="webhooks"><h2 id="webhooks">Webhooks</h2>
<p>A job with a <code>webhook_url</code> gets a POST with this JSON body when it completes or fails (headers <code>x-farm-event</code>, <code>x-farm-delivery</code>: the same on every retry of one event, deduplicate on it; and, when the master has <code>FARM_WEBHOOK_SECRET</code>, <code>x-farm-timestamp</code> and <code>x-farm-signature: sha256=</code> the hex HMAC-SHA256 of the timestamp, a dot and the raw body); the master retries with backoff until the URL answers 2xx, and <code>GET /jobs/{job_id}/webhook</code> shows the outcome.</p>
${fieldTable(payload, components)}
</section>
</main></body></html>`;
}
