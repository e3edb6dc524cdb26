/**
 * `GET /addon.zip`: the Blender add-on (addon/render_farm/), zipped on request with `render_farm/`
 * at the archive's root, as Blender's Preferences > Add-ons > Install wants it. The files are
 * bundled into the Worker as text by wrangler's `[[rules]]` (wrangler.toml), so what the master
 * serves is always the add-on of its own deployment, with no build step. Public, like the
 * dashboard's script: it holds no data (see ROUTE_ACCESS in auth.ts).
 */
import { downloadZip } from 'client-zip';
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import INIT_PY from '../../addon/render_farm/__init__.py';
import MANIFEST from '../../addon/render_farm/blender_manifest.toml';
import CLIENT_PY from '../../addon/render_farm/client.py';
import DEPS_PY from '../../addon/render_farm/deps.py';
import OPERATORS_PY from '../../addon/render_farm/operators.py';
import PANEL_PY from '../../addon/render_farm/panel.py';
import SETTINGS_PY from '../../addon/render_farm/settings.py';
import SUBMIT_PY from '../../addon/render_farm/submit.py';

const FILES: Record<string, string> = {
  '__init__.py': INIT_PY,
  'blender_manifest.toml': MANIFEST,
  'client.py': CLIENT_PY,
  'deps.py': DEPS_PY,
  'operators.py': OPERATORS_PY,
  'panel.py': PANEL_PY,
  'settings.py': SETTINGS_PY,
  'submit.py': SUBMIT_PY,
};
/** Fixed, so the same add-on gives the same bytes. */
const MODIFIED = new Date('2000-01-01T00:00:00Z');

export const addonRoutes = new Hono<AppEnv>().get('/addon.zip', () => {
  const zip = downloadZip(Object.entries(FILES).map(([name, text]) => ({ name: `render_farm/${name}`, input: text, lastModified: MODIFIED })));
  return new Response(zip.body, {
    headers: {
      'content-type': 'application/zip',
      'content-disposition': 'attachment; filename="render_farm.zip"',
      'cache-control': 'public, max-age=60',
    },
  });
});
