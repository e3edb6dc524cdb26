/** `#/nodes`: the render nodes, what they work on, and buttons to drain, disable or enable them. */
import type { WorkerInfo, WorkerListResponse } from '../../protocol/api.ts';
import { getJson, send } from './api.ts';
import { h, headRow, KeyedRows, setBadge, setText } from './dom.ts';
import { ago } from './format.ts';
import { act, main, poll } from './view.ts';

function control(node: WorkerInfo, action: 'drain' | 'disable' | 'enable', label: string): HTMLButtonElement {
  return h('button', {
    type: 'button',
    text: label,
    'aria-label': `${label} ${node.name}`,
    onclick: () => void act(`${label} ${node.name}`, () => send('POST', `/workers/${node.worker_id}/${action}`)),
  });
}

export function showNodes(): void {
  document.title = 'Nodes · Render farm';
  const body = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true, text: `No render nodes yet. Start one with: npm run worker -- --master ${location.origin}` });
  main.append(
    h('h1', { text: 'Render nodes' }),
    h('table', { class: 'nodes' }, [
      h('caption', { class: 'visually-hidden', text: 'Render nodes' }),
      headRow(['Node', 'State', 'Working on', 'Devices', 'Frames rendered', 'Failures', 'Last seen', 'Actions']),
      body,
    ]),
    empty,
  );
  const rows = new KeyedRows(
    body,
    (node: WorkerInfo) => node.worker_id,
    () => {
      const cells = {
        name: h('th', { scope: 'row' }),
        state: h('td'),
        task: h('td'),
        devices: h('td'),
        frames: h('td', { class: 'num' }),
        failures: h('td', { class: 'num' }),
        seen: h('td'),
        actions: h('td', { class: 'buttons' }),
      };
      return { row: h('tr', null, Object.values(cells)), ...cells };
    },
    (c, node) => {
      setText(c.name, node.name + (node.hostname && node.hostname !== node.name ? ` (${node.hostname})` : ''));
      setBadge(c.state, node.state, `node-${node.state}`);
      const working = `${node.current_job_id}:${node.current_frame}`;
      if (c.task.dataset.working !== working) {
        c.task.dataset.working = working;
        c.task.textContent = '';
        if (node.current_job_id) {
          c.task.append(h('a', { href: `#/jobs/${node.current_job_id}`, text: `job ${node.current_job_id.slice(0, 8)}` }));
          if (node.current_frame !== null) c.task.append(`, frame ${node.current_frame}`);
        } else {
          c.task.textContent = '–';
        }
      }
      setText(c.devices, node.devices.length ? node.devices.map((d) => `${d.type}: ${d.name}`).join('; ') : node.threads ? `${node.threads} threads` : '–');
      setText(c.frames, node.frames_rendered);
      setText(c.failures, node.failures);
      setText(c.seen, ago(node.last_seen_at));
      const mode = node.enabled ? 'enabled' : 'disabled';
      if (c.actions.dataset.mode !== mode) {
        c.actions.dataset.mode = mode;
        c.actions.textContent = '';
        if (node.enabled) c.actions.append(control(node, 'drain', 'Drain'), control(node, 'disable', 'Disable'));
        else c.actions.append(control(node, 'enable', 'Enable'));
      }
    },
  );
  poll(async () => {
    const data = await getJson<WorkerListResponse>('/workers');
    empty.hidden = data.workers.length > 0;
    rows.sync(data.workers);
  });
}
