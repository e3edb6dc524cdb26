/**
 * A project as a manifest: the list of its files (path inside the project, SHA-256, size) and the
 * .blend to render. Each file is a blob stored by content (edge/blob-store.ts); the manifest itself
 * is stored by the SHA-256 of its canonical text (`canonicalManifest`), so the CLI, the master and
 * the node all name the same project with the same hash, and a resubmission after a tweak sends
 * only the blobs the master lacks. See docs/api.md, "Projects file by file".
 *
 * Paths follow the rules of project archive entries (`unsafeRelativePath`, `projectPathConflict`):
 * the master checks them at submission, the node again before it lays a project out on its disk.
 * Nothing here may depend on Workers or Node APIs (Web Crypto is in both).
 */
import { z } from 'zod';
import { sha256Schema, unsafeRelativePath } from './schemas.ts';

export const MANIFEST_VERSION = 1;

/** The longest manifest `POST /manifests` reads: about 40,000 files of 200-byte lines. */
export const MAX_MANIFEST_JSON_BYTES = 8 * 1024 * 1024;

const projectPath = (field: string) =>
  z.string({ error: `${field} is required` }).superRefine((p, ctx) => {
    const problem = unsafeRelativePath(p);
    if (problem) ctx.addIssue({ code: 'custom', message: `${field} "${p.slice(0, 200)}" ${problem}` });
  });

const manifestFileSchema = z
  .object({
    path: projectPath('path'),
    sha256: sha256Schema('sha256'),
    size: z
      .number({ error: 'size must be a number' })
      .int({ message: 'size must be a whole number of bytes' })
      .min(0, { message: 'size must not be negative' }),
  })
  .strict();

/**
 * Where paths clash: one path twice, or a file where another path needs a folder ("tex" and
 * "tex/a.png"). Null when they do not. Shared by manifests and project archives.
 */
export function projectPathConflict(entries: Iterable<{ path: string; kind: 'file' | 'dir' }>): string | null {
  const seen = new Map<string, 'file' | 'dir'>();
  for (const { path, kind } of entries) {
    if (seen.has(path)) return `"${path}" appears twice`;
    seen.set(path, kind);
  }
  for (const [name] of seen) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (seen.get(parent) === 'file') return `"${name}" is inside "${parent}", which is a file`;
    }
  }
  return null;
}

/** A manifest as sent (`POST /manifests`) and as stored; `main_blend` must be one of its files. */
export const manifestSchema = z
  .object({
    version: z.literal(MANIFEST_VERSION, { error: `version must be ${MANIFEST_VERSION}` }),
    main_blend: projectPath('main_blend').refine((p) => /\.blend$/i.test(p), { message: 'main_blend must name a .blend file' }),
    files: z.array(manifestFileSchema).min(1, { message: 'a manifest lists at least one file' }),
  })
  .strict()
  .superRefine((m, ctx) => {
    const conflict = projectPathConflict(m.files.map((f) => ({ path: f.path, kind: 'file' as const })));
    if (conflict) ctx.addIssue({ code: 'custom', path: ['files'], message: `files: ${conflict}` });
    if (!m.files.some((f) => f.path === m.main_blend)) {
      ctx.addIssue({ code: 'custom', path: ['main_blend'], message: `main_blend "${m.main_blend.slice(0, 200)}" is not one of the manifest's files` });
    }
  });
export type Manifest = z.infer<typeof manifestSchema>;

/** Why a manifest is over the limits (too many files, too many bytes), or null. */
export function manifestOverLimits(m: Manifest, limits: { maxFiles: number; maxBytes: number }): string | null {
  if (m.files.length > limits.maxFiles) return `the manifest lists ${m.files.length} files, over the limit of ${limits.maxFiles}`;
  const bytes = manifestBytes(m);
  if (bytes > limits.maxBytes) return `the manifest's files hold ${bytes} bytes, over the limit of ${limits.maxBytes}`;
  return null;
}

/** Bytes of all a manifest's files together. */
export const manifestBytes = (m: Manifest) => m.files.reduce((sum, f) => sum + f.size, 0);

/**
 * The manifest's canonical text, which its hash names: files sorted by path (code-unit order),
 * keys in a fixed order, no spaces. Two submissions of the same project give the same text.
 */
export function canonicalManifest(m: Manifest): string {
  const files = [...m.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((f) => ({ path: f.path, sha256: f.sha256, size: f.size }));
  return JSON.stringify({ version: MANIFEST_VERSION, main_blend: m.main_blend, files });
}

/** Hex SHA-256 of a manifest's canonical text, with Web Crypto (Workers and Node alike). */
export async function manifestSha256(canonical: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonical));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** `POST /manifests`' answer: the manifest's hash and the blobs the master still lacks. */
export const manifestResponseSchema = z.object({
  manifest_sha256: z.string(),
  files: z.number(),
  total_bytes: z.number(),
  /** Blobs to upload (POST /blobs/{sha256}/uploads) before `POST /jobs` with kind "manifest". */
  missing: z.array(z.object({ sha256: z.string(), size: z.number() })),
  missing_bytes: z.number(),
});
export type ManifestResponse = z.infer<typeof manifestResponseSchema>;
