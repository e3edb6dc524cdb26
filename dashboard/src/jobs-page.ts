/** `#/`: every job, newest first, with its progress. */
import type { JobListResponse } from '../../protocol/api.ts';
import { getJson } from './api.ts';
import { h, headRow, KeyedRows, progressBar, setBadge, setText } from './dom.ts';
import { ago, barValue, duration, percent } from './format.ts';
import { main, poll } from './view.ts';

type Job = JobListResponse['jobs'][number];

export function showJobs(): void {
  document.title = 'Jobs · Render farm';
  const body = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true, text: 'No jobs yet. Submit one with: npx farm submit scene.blend --frames 1-100' });
  main.append(
    h('h1', { text: 'Jobs' }),
    h('table', { class: 'jobs' }, [
      h('caption', { class: 'visually-hidden', text: 'Jobs, newest first' }),
      headRow(['Job', 'Status', 'Progress', 'Done', 'Running', 'Failed', 'ETA', 'Priority', 'Submitted']),
      body,
    ]),
    empty,
  );
  const rows = new KeyedRows(
    body,
    (job: Job) => job.job_id,
    (job) => {
      const cells = {
        name: h('a', { href: `#/jobs/${job.job_id}` }),
        status: h('td'),
        bar: progressBar(`Progress of ${job.name}`),
        pct: h('span', { class: 'pct' }),
        done: h('td', { class: 'num' }),
        running: h('td', { class: 'num' }),
        failed: h('td', { class: 'num' }),
        eta: h('td'),
        priority: h('td', { class: 'num' }),
        created: h('td'),
      };
      const row = h('tr', null, [
        h('th', { scope: 'row' }, [cells.name]),
        cells.status,
        h('td', { class: 'progress' }, [cells.bar, cells.pct]),
        cells.done,
        cells.running,
        cells.failed,
        cells.eta,
        cells.priority,
        cells.created,
      ]);
      return { row, ...cells };
    },
    (c, job) => {
      setText(c.name, job.name);
      setBadge(c.status, job.status);
      c.bar.value = barValue(job.progress);
      setText(c.pct, percent(job.progress));
      setText(c.done, `${job.completed_frames} / ${job.total_frames}`);
      setText(c.running, job.running_frames);
      setText(c.failed, job.failed_frames);
      setText(c.eta, duration(job.eta_seconds));
      setText(c.priority, job.priority);
      setText(c.created, ago(job.created_at));
    },
  );
  poll(async () => {
    const data = await getJson<JobListResponse>('/jobs?limit=100');
    empty.hidden = data.jobs.length > 0;
    rows.sync(data.jobs);
  });
}
