/**
 * The dashboard's script (built into /dashboard.js by scripts/build-dashboard.mjs): a page per
 * location hash (`#/`, `#/jobs/<id>`, `#/nodes`), each reading the same JSON API as the CLI.
 */
import { clearImageQueue } from './images.ts';
import { showJob } from './job-page.ts';
import { showJobs } from './jobs-page.ts';
import { showNodes } from './nodes-page.ts';
import { initTokenPanel } from './token.ts';
import { announce, newView } from './view.ts';

const JOB_HASH = /^\/jobs\/([0-9a-f-]{36})$/;

function route(): void {
  const view = newView();
  clearImageQueue();
  const hash = location.hash.replace(/^#/, '') || '/';
  const job = JOB_HASH.exec(hash);
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${job ? '/' : hash}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (job) showJob(job[1]!, view);
  else if (hash === '/nodes') showNodes();
  else showJobs();
}

initTokenPanel(() => {
  announce('Token saved');
  route();
});
window.addEventListener('hashchange', route);
route();
