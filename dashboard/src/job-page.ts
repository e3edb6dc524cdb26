/**
 * `#/jobs/<id>`: one job: its progress, controls, preview video, a grid of its frames with
 * thumbnails, and its tasks with their logs.
 */
import type { FrameListItem, FrameListResponse, TaskInfo, TaskListResponse, WorkerListResponse } from '../../protocol/api.ts';
import { isFrameOfTask, type FrameRange } from '../../protocol/frame-list.ts';
import type { JobStatusResponse } from '../../protocol/schemas.ts';
import { getBlob, getJson, getText, messageOf, send } from './api.ts';
import { byId, h, headRow, KeyedRows, progressBar, setBadge, setText, statusBadge } from './dom.ts';
import { barValue, duration, frameSpan, percent } from './format.ts';
import { GRID_PAGE, jobRanges, pageFrames } from './frame-pages.ts';
import { setImage } from './images.ts';
import { token } from './token.ts';
import { act, isCurrent, main, objectUrl, poll, tick } from './view.ts';

type PreviewVideo = NonNullable<JobStatusResponse['preview_video']>;
type FrameState = 'done' | 'rendering' | 'claimed' | 'failed' | 'queued';

/** Node names by id, for the task table; kept across views (a node's name rarely changes). */
const nodeNames = new Map<string, string>();

const VIDEO_STATES: Partial<Record<PreviewVideo['status'], string>> = {
  waiting: 'Made once every frame is rendered.',
  queued: 'Waiting for a node with ffmpeg.',
  running: 'Being made.',
  failed: 'Could not be made (see the warnings).',
};

function stat(label: string, value: string | number): HTMLDivElement {
  return h('div', null, [h('dt', { text: label }), h('dd', { text: String(value) })]);
}

/** A frame's state in the grid; `ranges`: the job's frames (jobRanges), which say which frames a task renders. */
function frameState(frame: number, rendered: Map<number, FrameListItem>, tasks: readonly TaskInfo[], ranges: readonly FrameRange[]): FrameState {
  if (rendered.has(frame)) return 'done';
  for (const t of tasks) {
    if (!isFrameOfTask(ranges, t, frame)) continue;
    if (t.status === 'running') return t.current_frame === frame ? 'rendering' : 'claimed';
    if (t.status === 'failed') return 'failed';
  }
  return 'queued';
}

/** What the grid shows of a frame: the node's preview, else the frame itself where browsers display it. */
function thumbnailUrl(frame: FrameListItem): string | null {
  if (frame.preview_url) return frame.preview_url;
  if (/^image\/(png|jpeg|webp|bmp)$/.test(frame.content_type)) return frame.url;
  return null;
}

async function showLog(task: TaskInfo): Promise<void> {
  const dialog = byId<HTMLDialogElement>('log-dialog');
  const text = byId('log-text');
  setText(byId('log-title'), `Log of frames ${task.start_frame}–${task.end_frame}`);
  text.textContent = 'Loading…';
  if (!dialog.open) dialog.showModal();
  try {
    text.textContent = await getText(task.log_url!);
  } catch (err) {
    text.textContent = `Could not load the log: ${messageOf(err)}`;
  }
}

export function showJob(jobId: string, view: number): void {
  const jobPath = `/jobs/${jobId}`;
  let job: JobStatusResponse | null = null;
  let page = 0;

  const title = h('h1', { text: 'Job' });
  const statusLine = h('p', { class: 'job-status' });
  const bar = progressBar('Job progress');
  bar.id = 'job-progress';
  const pct = h('span', { class: 'pct', id: 'job-percent' });
  const stats = h('dl', { class: 'stats' });
  const errorLine = h('p', { class: 'job-error', role: 'alert', hidden: true });
  const warnings = h('ul', { class: 'warnings', hidden: true });
  const priorityInput = h('input', { type: 'number', min: '0', max: '100', id: 'priority', required: true });
  const control = (text: string, done: string, action: string, confirmText?: string, className?: string) =>
    h('button', {
      type: 'button',
      class: className,
      text,
      onclick: () => {
        if (!confirmText || confirm(confirmText)) void act(done, () => send('POST', `${jobPath}/${action}`));
      },
    });
  const buttons = {
    pause: control('Pause', 'Paused', 'pause'),
    resume: control('Resume', 'Resumed', 'resume'),
    cancel: control('Cancel', 'Canceled', 'cancel', 'Cancel this job? Nodes rendering it stop.', 'danger'),
    requeue: control('Requeue failed frames', 'Failed frames requeued', 'requeue_failed'),
    remove: h('button', {
      type: 'button',
      class: 'danger',
      text: 'Delete',
      onclick: () => {
        if (!confirm('Delete this job with all its frames and logs? This cannot be undone.')) return;
        void act('Deleted', async () => {
          await send('DELETE', jobPath);
          location.hash = '#/';
        });
      },
    }),
  };
  const priorityForm = h(
    'form',
    {
      class: 'priority',
      onsubmit: (event) => {
        event.preventDefault();
        const priority = Number(priorityInput.value);
        void act(`Priority set to ${priority}`, () => send('PATCH', jobPath, { priority }));
      },
    },
    [h('label', { for: 'priority', text: 'Priority (0-100)' }), priorityInput, h('button', { type: 'submit', text: 'Set priority' })],
  );

  // The preview video (jobs submitted with preview_video), loaded once it is made.
  const video = h('video', { controls: true, preload: 'metadata', id: 'preview-video', 'aria-label': 'Preview video' });
  const videoNote = h('p', { class: 'video-note' });
  const videoLink = h('a', { text: 'Download the video', hidden: true });
  const videoSection = h('section', { 'aria-labelledby': 'video-title', hidden: true }, [
    h('h2', { id: 'video-title', text: 'Preview video' }),
    videoNote,
    video,
    h('p', null, [videoLink]),
  ]);
  const gridNote = h('p', { class: 'grid-note' });
  const pager = h('div', { class: 'pager' });
  const grid = h('ol', { class: 'frames', 'aria-label': 'Frames' });
  const taskBody = h('tbody');

  main.append(
    h('p', { class: 'crumbs' }, [h('a', { href: '#/', text: '← All jobs' })]),
    title,
    statusLine,
    h('div', { class: 'job-progress' }, [bar, pct]),
    stats,
    errorLine,
    warnings,
    h('section', { 'aria-labelledby': 'controls-title', class: 'controls' }, [
      h('h2', { id: 'controls-title', text: 'Control' }),
      h('div', { class: 'buttons' }, Object.values(buttons)),
      priorityForm,
    ]),
    videoSection,
    h('section', { 'aria-labelledby': 'frames-title' }, [h('h2', { id: 'frames-title', text: 'Frames' }), gridNote, pager, grid]),
    h('section', { 'aria-labelledby': 'tasks-title' }, [
      h('h2', { id: 'tasks-title', text: 'Tasks' }),
      h('table', { class: 'tasks' }, [
        h('caption', { class: 'visually-hidden', text: 'Frame ranges claimed by render nodes' }),
        headRow(['Frames', 'State', 'Node', 'Time', 'Attempts', 'Message', 'Log']),
        taskBody,
      ]),
    ]),
  );

  /** The job's frames as the API lists them: its frame list, or its span. */
  const listText = (j: JobStatusResponse) => j.frames ?? frameSpan(j.start_frame, j.end_frame);

  function renderGrid(j: JobStatusResponse, frames: readonly number[], rendered: Map<number, FrameListItem>, tasks: readonly TaskInfo[]): void {
    const shown = `${page}:${listText(j)}`;
    if (grid.dataset.shown !== shown) {
      grid.dataset.shown = shown;
      grid.replaceChildren(
        ...frames.map((f) =>
          h('li', { class: 'frame', 'data-frame': f }, [h('div', { class: 'thumb' }), h('span', { class: 'frame-label', text: String(f) })]),
        ),
      );
    }
    for (const cell of Array.from(grid.children) as HTMLElement[]) {
      const number = Number(cell.dataset.frame);
      const state = frameState(number, rendered, tasks, ranges);
      if (cell.dataset.state !== state) {
        cell.dataset.state = state;
        cell.className = `frame state-${state}`;
      }
      const frame = rendered.get(number);
      const thumb = cell.firstElementChild as HTMLElement;
      const url = frame ? thumbnailUrl(frame) : null;
      let img = thumb.querySelector('img');
      if (frame && url) {
        if (!img) {
          img = h('img', { alt: `Frame ${number}`, loading: 'lazy', decoding: 'async', 'data-frame': number });
          thumb.replaceChildren(h('a', { href: frame.url, target: '_blank', rel: 'noopener', title: `Frame ${number} (${frame.file_name})` }, [img]));
        }
        setImage(img, url);
      } else if (!img) {
        setText(thumb, state === 'done' ? 'no preview' : state);
      }
    }
    const span = frames.length ? frameSpan(frames[0]!, frames[frames.length - 1]!) : 'none';
    setText(gridNote, j.frames ? `Frames ${span} of the ${j.total_frames} listed (${j.frames}).` : `Frames ${span} of ${listText(j)}.`);
    renderPager(j);
  }

  function renderPager(j: JobStatusResponse): void {
    const pages = Math.ceil(j.total_frames / GRID_PAGE);
    pager.hidden = pages <= 1;
    if (pages <= 1 || pager.dataset.page === `${page}/${pages}`) return;
    pager.dataset.page = `${page}/${pages}`;
    const turn = (by: number) => () => {
      page += by;
      void tick();
    };
    pager.replaceChildren(
      h('button', { type: 'button', text: 'Previous frames', disabled: page === 0, onclick: turn(-1) }),
      h('span', { text: ` Page ${page + 1} of ${pages} ` }),
      h('button', { type: 'button', text: 'Next frames', disabled: page >= pages - 1, onclick: turn(1) }),
    );
  }

  const taskRows = new KeyedRows(
    taskBody,
    (task: TaskInfo) => task.task_id,
    () => {
      const cells = {
        frames: h('th', { scope: 'row' }),
        state: h('td'),
        node: h('td'),
        time: h('td'),
        attempts: h('td', { class: 'num' }),
        message: h('td', { class: 'message' }),
        log: h('td'),
      };
      return { row: h('tr', null, Object.values(cells)), ...cells };
    },
    (c, task) => {
      const range = frameSpan(task.start_frame, task.end_frame) + (task.frame_step > 1 ? ` step ${task.frame_step}` : '');
      const kind = task.kind === 'tile' ? `tile ${(task.tile_index ?? 0) + 1}${job?.tiles ? ` of ${job.tiles}` : ''}` : task.kind;
      setText(c.frames, task.kind === 'render' ? range : `${kind} · ${range}`);
      setBadge(c.state, task.status);
      setText(c.node, task.worker_id ? (nodeNames.get(task.worker_id) ?? task.worker_id.slice(0, 8)) : '–');
      setText(c.time, taskTime(task));
      setText(c.attempts, task.attempts);
      setText(c.message, [task.failure_reason, task.message].filter(Boolean).join(': '));
      if (task.log_url && !c.log.firstChild) {
        c.log.append(
          h('button', {
            type: 'button',
            class: 'link',
            text: 'Log',
            'aria-label': `Log of frames ${task.start_frame}–${task.end_frame}`,
            onclick: () => void showLog(task),
          }),
        );
      }
    },
  );

  /** The rendered frames of the grid's page, by number, as of the last refresh, and the span they cover. */
  let rendered = new Map<number, FrameListItem>();
  let renderedSpan = [0, -1];
  /** The job's frames as of the last refresh (jobRanges). */
  let ranges: FrameRange[] = [];

  /**
   * The render time of a task's frames so far, as far as the grid's page has them. Only renders
   * and stitches make frames: a tile's or video's time is not theirs.
   */
  function taskTime(task: TaskInfo): string {
    if (task.kind !== 'render' && task.kind !== 'stitch') return '–';
    let ms = 0;
    let counted = 0;
    for (let f = Math.max(task.start_frame, renderedSpan[0]!); f <= Math.min(task.end_frame, renderedSpan[1]!); f++) {
      const frame = rendered.get(f);
      if (!frame || frame.render_ms === null || !isFrameOfTask(ranges, task, f)) continue;
      ms += frame.render_ms;
      counted++;
    }
    return counted ? duration(ms / 1000, true) + (task.status === 'running' ? ' so far' : '') : '–';
  }

  function renderJob(j: JobStatusResponse): void {
    document.title = `${j.name} · Render farm`;
    setText(title, j.name);
    statusLine.replaceChildren(
      statusBadge(j.status),
      ` ${j.completed_frames} of ${j.total_frames} frames${j.eta_seconds !== null ? `, about ${duration(j.eta_seconds)} left` : ''}`,
    );
    bar.value = barValue(j.progress);
    setText(pct, percent(j.progress));
    stats.replaceChildren(
      stat('Done', j.completed_frames),
      stat('Rendering', j.running_frames),
      stat('Failed', j.failed_frames),
      stat('Queued', j.queued_frames),
      stat('Mean frame time', j.avg_frame_ms === null ? '–' : duration(j.avg_frame_ms / 1000, true)),
      stat('ETA', duration(j.eta_seconds)),
      stat('Priority', j.priority),
      stat('Frames', listText(j)),
    );
    errorLine.hidden = !j.error;
    setText(errorLine, j.error);
    warnings.hidden = !j.warnings.length;
    warnings.replaceChildren(...j.warnings.map((w) => h('li', { text: w })));
    const active = j.status === 'queued' || j.status === 'running';
    buttons.pause.disabled = !active;
    buttons.resume.disabled = !(j.status === 'paused' || j.status === 'canceled');
    buttons.cancel.disabled = !(active || j.status === 'paused');
    buttons.requeue.disabled = j.failed_frames === 0;
    if (document.activeElement !== priorityInput) priorityInput.value = String(j.priority);
    renderVideo(j.name, j.preview_video);
  }

  function renderVideo(name: string, state: PreviewVideo | null): void {
    videoSection.hidden = !state;
    if (!state) return;
    setText(videoNote, state.url ? '' : (VIDEO_STATES[state.status] ?? ''));
    video.hidden = !state.url;
    if (!state.url || video.dataset.src === state.url) return;
    const url = state.url;
    video.dataset.src = url;
    // A <video> cannot send the token: with one, the file comes as a blob: URL.
    const source = token() ? getBlob(url).then(objectUrl) : Promise.resolve(url);
    source.then(
      (src) => {
        video.src = src;
        videoLink.href = src;
        videoLink.download = `${name}.mp4`;
        videoLink.hidden = false;
      },
      (err: unknown) => {
        setText(videoNote, `Could not load the video: ${messageOf(err)}`);
        delete video.dataset.src;
      },
    );
  }

  poll(async () => {
    const [status, tasks, workers] = await Promise.all([
      getJson<JobStatusResponse>(jobPath),
      getJson<TaskListResponse>(`${jobPath}/tasks`),
      getJson<WorkerListResponse>('/workers').catch((): WorkerListResponse => ({ workers: [] })),
    ]);
    if (!isCurrent(view)) return;
    job = status;
    const pages = Math.max(1, Math.ceil(status.total_frames / GRID_PAGE));
    page = Math.min(page, pages - 1);
    ranges = jobRanges(status);
    const frames = pageFrames(ranges, page);
    // The rendered frames of this page: at most GRID_PAGE of them from its first frame on.
    const after = page > 0 && frames.length ? `&after=${frames[0]! - 1}` : '';
    const listed = await getJson<FrameListResponse>(`${jobPath}/frames?limit=${GRID_PAGE}${after}`);
    if (!isCurrent(view)) return;
    for (const w of workers.workers) nodeNames.set(w.worker_id, w.name);
    rendered = new Map(listed.frames.map((f) => [f.frame, f]));
    renderedSpan = listed.frames.length ? [listed.frames[0]!.frame, listed.frames[listed.frames.length - 1]!.frame] : [0, -1];
    renderJob(status);
    renderGrid(status, frames, rendered, tasks.tasks);
    taskRows.sync(tasks.tasks);
  });
}
