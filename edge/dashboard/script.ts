/**
 * The dashboard's script, served as /dashboard.js. Plain JavaScript that browsers run as it is
 * (no build step, no framework): it reads the same JSON API as the CLI and polls it every
 * POLL_MS while the tab is visible. The DOM is built with textContent only (no innerHTML), so a
 * job name can never inject markup; rows and frame cells are kept and updated in place, so focus
 * and scroll position survive each refresh.
 *
 * Kept free of backticks and dollar-brace sequences so it can live in this template string;
 * test/edge/dashboard.test.ts parses it.
 */
export const DASHBOARD_JS = String.raw`'use strict';
(function () {
  var POLL_MS = 2000;
  var HIDDEN_POLL_MS = 10000;
  var TOKEN_KEY = 'farm-token';
  /** Frames shown per page of the job's grid. */
  var GRID_PAGE = 500;
  var main = document.getElementById('main');
  var live = document.getElementById('live');
  var errorBox = document.getElementById('error');
  var view = { gen: 0, poll: null, timer: null, urls: [] };
  var nodeNames = {};

  // ---------------------------------------------------------------- helpers
  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === undefined || value === null || value === false) return;
        if (key === 'text') el.textContent = value;
        else if (key === 'class') el.className = value;
        else if (key.slice(0, 2) === 'on') el.addEventListener(key.slice(2), value);
        else if (value === true) el.setAttribute(key, '');
        else el.setAttribute(key, String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return el;
  }

  function setText(el, text) {
    text = text === null || text === undefined ? '' : String(text);
    if (el.textContent !== text) el.textContent = text;
  }

  function token() {
    try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function announce(message) {
    live.textContent = '';
    setTimeout(function () { live.textContent = message; }, 50);
  }

  function showError(message) {
    if (!message) { errorBox.hidden = true; errorBox.textContent = ''; return; }
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }

  async function api(path, options) {
    options = options || {};
    var headers = {};
    var t = token();
    if (t) headers.authorization = 'Bearer ' + t;
    var body;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    var res = await fetch(path, { method: options.method || 'GET', headers: headers, body: body });
    if (res.status === 401 || res.status === 403) {
      openTokenPanel('This master needs a token: paste a submitter token (FARM_SUBMIT_TOKEN).');
    }
    if (!res.ok) {
      var text = await res.text();
      var message = 'HTTP ' + res.status;
      try { message = JSON.parse(text).error || message; } catch (e) { if (text) message = text.slice(0, 300); }
      throw new ApiError(res.status, message);
    }
    if (options.text) return res.text();
    if (options.blob) return res.blob();
    return res.status === 204 ? null : res.json();
  }

  /** Seconds as "1 h 2 min", "3 min 5 s", "12 s"; with precise, short times keep a decimal ("0.4 s"). */
  function duration(seconds, precise) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
    if (precise && seconds < 10) return Math.max(0, seconds).toFixed(1) + ' s';
    seconds = Math.max(0, Math.round(seconds));
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var secs = seconds % 60;
    if (hours > 0) return hours + ' h ' + minutes + ' min';
    if (minutes > 0) return minutes + ' min ' + secs + ' s';
    return secs + ' s';
  }

  function ago(iso) {
    if (!iso) return '–';
    return duration((Date.now() - Date.parse(iso)) / 1000) + ' ago';
  }

  function percent(progress) {
    return (Math.floor(progress * 1000) / 10).toFixed(1) + '%';
  }

  function statusBadge(status) {
    return h('span', { class: 'badge status-' + status, text: status });
  }

  function progressBar(label) {
    var bar = h('progress', { max: '100', value: '0', 'aria-label': label });
    return bar;
  }

  /** Keeps one row per item, keyed, in the order of items; creates and updates rows in place. */
  function syncRows(tbody, items, key, create, update) {
    var existing = {};
    Array.prototype.forEach.call(tbody.children, function (row) { existing[row.dataset.key] = row; });
    var before = null;
    for (var i = items.length - 1; i >= 0; i--) {
      var k = key(items[i]);
      var row = existing[k];
      if (!row) {
        row = create(items[i]);
        row.dataset.key = k;
      }
      delete existing[k];
      update(row, items[i]);
      if (row.nextSibling !== before || row.parentNode !== tbody) tbody.insertBefore(row, before);
      before = row;
    }
    Object.keys(existing).forEach(function (k) { existing[k].remove(); });
  }

  /**
   * Sets an image's source. Without a token the browser loads it (lazily). With a token the image
   * is fetched with it (img tags send no headers) once it scrolls into view, four at a time, so a
   * grid of hundreds of frames stays within the master's rate limit.
   */
  var imageQueue = [];
  var imagesInFlight = 0;
  var imageObserver = 'IntersectionObserver' in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      imageObserver.unobserve(entry.target);
      imageQueue.push(entry.target);
      pumpImages();
    });
  }, { rootMargin: '300px' }) : null;

  function pumpImages() {
    while (imagesInFlight < 4 && imageQueue.length > 0) {
      var img = imageQueue.shift();
      var url = img.dataset.src;
      if (!img.isConnected || img.dataset.loaded === url) continue;
      imagesInFlight++;
      loadImage(img, url).finally(function () {
        imagesInFlight--;
        pumpImages();
      });
    }
  }

  async function loadImage(img, url) {
    try {
      var blob = await api(url, { blob: true });
      if (img.dataset.src !== url) return;
      var objectUrl = URL.createObjectURL(blob);
      view.urls.push(objectUrl);
      img.src = objectUrl;
      img.dataset.loaded = url;
    } catch (err) {
      img.alt = img.alt.replace(/ \(could not load\)$/, '') + ' (could not load)';
    }
  }

  function setImage(img, url) {
    if (img.dataset.src === url) return;
    img.dataset.src = url;
    if (!token()) { img.src = url; return; }
    if (imageObserver) imageObserver.observe(img);
    else { imageQueue.push(img); pumpImages(); }
  }

  // ---------------------------------------------------------------- polling and routing
  function poll(fn) {
    view.poll = fn;
    tick();
  }

  async function tick() {
    clearTimeout(view.timer);
    var gen = view.gen;
    if (!view.poll) return;
    try {
      await view.poll();
      if (gen === view.gen) showError(null);
    } catch (err) {
      if (gen === view.gen) showError(err.message || String(err));
    }
    if (gen === view.gen) view.timer = setTimeout(tick, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  document.addEventListener('visibilitychange', function () { if (!document.hidden) tick(); });

  function route() {
    view.gen++;
    view.poll = null;
    clearTimeout(view.timer);
    view.urls.forEach(function (u) { URL.revokeObjectURL(u); });
    view.urls = [];
    imageQueue = [];
    showError(null);
    main.textContent = '';
    var hash = location.hash.replace(/^#/, '') || '/';
    var match = /^\/jobs\/([0-9a-f-]{36})$/.exec(hash);
    document.querySelectorAll('nav a').forEach(function (a) {
      var current = a.getAttribute('href') === '#' + (match ? '/' : hash);
      if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
    if (match) showJob(match[1]);
    else if (hash === '/nodes') showNodes();
    else showJobs();
  }

  async function act(label, fn) {
    try {
      await fn();
      announce(label);
      tick();
    } catch (err) {
      showError(label + ' failed: ' + (err.message || err));
    }
  }

  // ---------------------------------------------------------------- jobs list
  function showJobs() {
    document.title = 'Jobs · Render farm';
    var tbody = h('tbody');
    var empty = h('p', { class: 'empty', hidden: true, text: 'No jobs yet. Submit one with: npx farm submit scene.blend --frames 1-100' });
    main.appendChild(h('h1', { text: 'Jobs' }));
    main.appendChild(h('table', { class: 'jobs' }, [
      h('caption', { class: 'visually-hidden', text: 'Jobs, newest first' }),
      h('thead', null, [h('tr', null, ['Job', 'Status', 'Progress', 'Done', 'Running', 'Failed', 'ETA', 'Priority', 'Submitted'].map(function (t) {
        return h('th', { scope: 'col', text: t });
      }))]),
      tbody,
    ]));
    main.appendChild(empty);
    poll(async function () {
      var data = await api('/jobs?limit=100');
      empty.hidden = data.jobs.length > 0;
      syncRows(tbody, data.jobs, function (j) { return j.job_id; }, function (job) {
        var row = h('tr');
        row.cells_ = {
          name: h('a', { href: '#/jobs/' + job.job_id }),
          status: h('td'),
          bar: progressBar('Progress of ' + job.name),
          pct: h('span', { class: 'pct' }),
          done: h('td', { class: 'num' }),
          running: h('td', { class: 'num' }),
          failed: h('td', { class: 'num' }),
          eta: h('td'),
          priority: h('td', { class: 'num' }),
          created: h('td'),
        };
        var c = row.cells_;
        [h('th', { scope: 'row' }, [c.name]), c.status, h('td', { class: 'progress' }, [c.bar, c.pct]), c.done, c.running, c.failed, c.eta, c.priority, c.created]
          .forEach(function (cell) { row.appendChild(cell); });
        return row;
      }, function (row, job) {
        var c = row.cells_;
        setText(c.name, job.name);
        if (c.status.dataset.status !== job.status) {
          c.status.dataset.status = job.status;
          c.status.textContent = '';
          c.status.appendChild(statusBadge(job.status));
        }
        c.bar.value = Math.round(job.progress * 1000) / 10;
        setText(c.pct, percent(job.progress));
        setText(c.done, job.completed_frames + ' / ' + job.total_frames);
        setText(c.running, job.running_frames);
        setText(c.failed, job.failed_frames);
        setText(c.eta, job.eta_seconds === null ? '–' : duration(job.eta_seconds));
        setText(c.priority, job.priority);
        setText(c.created, ago(job.created_at));
      });
    });
  }

  // ---------------------------------------------------------------- one job
  function showJob(jobId) {
    var gen = view.gen;
    var title = h('h1', { text: 'Job' });
    var statusEl = h('p', { class: 'job-status' });
    var bar = progressBar('Job progress');
    bar.id = 'job-progress';
    var pct = h('span', { class: 'pct', id: 'job-percent' });
    var stats = h('dl', { class: 'stats' });
    var errorEl = h('p', { class: 'job-error', role: 'alert', hidden: true });
    var warnings = h('ul', { class: 'warnings', hidden: true });
    var priorityInput = h('input', { type: 'number', min: '0', max: '100', id: 'priority', required: true });
    var job = null;
    var buttons = {
      pause: h('button', { type: 'button', text: 'Pause', onclick: function () { act('Paused', function () { return api('/jobs/' + jobId + '/pause', { method: 'POST' }); }); } }),
      resume: h('button', { type: 'button', text: 'Resume', onclick: function () { act('Resumed', function () { return api('/jobs/' + jobId + '/resume', { method: 'POST' }); }); } }),
      cancel: h('button', { type: 'button', class: 'danger', text: 'Cancel', onclick: function () {
        if (confirm('Cancel this job? Nodes rendering it stop.')) act('Canceled', function () { return api('/jobs/' + jobId + '/cancel', { method: 'POST' }); });
      } }),
      requeue: h('button', { type: 'button', text: 'Requeue failed frames', onclick: function () {
        act('Failed frames requeued', function () { return api('/jobs/' + jobId + '/requeue_failed', { method: 'POST' }); });
      } }),
      remove: h('button', { type: 'button', class: 'danger', text: 'Delete', onclick: function () {
        if (!confirm('Delete this job with all its frames and logs? This cannot be undone.')) return;
        act('Deleted', async function () {
          await api('/jobs/' + jobId, { method: 'DELETE' });
          location.hash = '#/';
        });
      } }),
    };
    var priorityForm = h('form', { class: 'priority', onsubmit: function (event) {
      event.preventDefault();
      var value = Number(priorityInput.value);
      act('Priority set to ' + value, function () { return api('/jobs/' + jobId, { method: 'PATCH', body: { priority: value } }); });
    } }, [h('label', { for: 'priority', text: 'Priority (0-100)' }), priorityInput, h('button', { type: 'submit', text: 'Set priority' })]);

    // The preview video (jobs submitted with preview_video), loaded once it is made.
    var video = h('video', { controls: true, preload: 'metadata', id: 'preview-video', 'aria-label': 'Preview video' });
    var videoNote = h('p', { class: 'video-note' });
    var videoLink = h('a', { text: 'Download the video', hidden: true });
    var videoSection = h('section', { 'aria-labelledby': 'video-title', hidden: true }, [
      h('h2', { id: 'video-title', text: 'Preview video' }), videoNote, video, h('p', null, [videoLink]),
    ]);
    var gridNote = h('p', { class: 'grid-note' });
    var pager = h('div', { class: 'pager' });
    var grid = h('ol', { class: 'frames', 'aria-label': 'Frames' });
    var taskBody = h('tbody');
    var page = 0;

    main.appendChild(h('p', { class: 'crumbs' }, [h('a', { href: '#/', text: '← All jobs' })]));
    main.appendChild(title);
    main.appendChild(statusEl);
    main.appendChild(h('div', { class: 'job-progress' }, [bar, pct]));
    main.appendChild(stats);
    main.appendChild(errorEl);
    main.appendChild(warnings);
    main.appendChild(h('section', { 'aria-labelledby': 'controls-title', class: 'controls' }, [
      h('h2', { id: 'controls-title', text: 'Control' }),
      h('div', { class: 'buttons' }, [buttons.pause, buttons.resume, buttons.cancel, buttons.requeue, buttons.remove]),
      priorityForm,
    ]));
    main.appendChild(videoSection);
    main.appendChild(h('section', { 'aria-labelledby': 'frames-title' }, [h('h2', { id: 'frames-title', text: 'Frames' }), gridNote, pager, grid]));
    main.appendChild(h('section', { 'aria-labelledby': 'tasks-title' }, [
      h('h2', { id: 'tasks-title', text: 'Tasks' }),
      h('table', { class: 'tasks' }, [
        h('caption', { class: 'visually-hidden', text: 'Frame ranges claimed by render nodes' }),
        h('thead', null, [h('tr', null, ['Frames', 'State', 'Node', 'Time', 'Attempts', 'Message', 'Log'].map(function (t) { return h('th', { scope: 'col', text: t }); }))]),
        taskBody,
      ]),
    ]));

    function stat(label, value) {
      return h('div', null, [h('dt', { text: label }), h('dd', { text: String(value) })]);
    }

    function frameState(frame, framesByNumber, tasks) {
      if (framesByNumber[frame]) return 'done';
      for (var i = 0; i < tasks.length; i++) {
        var t = tasks[i];
        if (frame >= t.start_frame && frame <= t.end_frame) {
          if (t.status === 'running') return t.current_frame === frame ? 'rendering' : 'claimed';
          if (t.status === 'failed') return 'failed';
        }
      }
      return 'queued';
    }

    function thumbnailUrl(frame) {
      if (frame.preview_url) return frame.preview_url;
      if (/^image\/(png|jpeg|webp|bmp)$/.test(frame.content_type)) return frame.url;
      return null;
    }

    function renderGrid(framesByNumber, tasks) {
      var first = job.start_frame + page * GRID_PAGE;
      var last = Math.min(job.end_frame, first + GRID_PAGE - 1);
      if (grid.dataset.range !== first + '-' + last) {
        grid.dataset.range = first + '-' + last;
        grid.textContent = '';
        for (var f = first; f <= last; f++) {
          var cell = h('li', { class: 'frame', 'data-frame': f }, [
            h('div', { class: 'thumb' }),
            h('span', { class: 'frame-label', text: String(f) }),
          ]);
          grid.appendChild(cell);
        }
      }
      Array.prototype.forEach.call(grid.children, function (cell) {
        var number = Number(cell.dataset.frame);
        var state = frameState(number, framesByNumber, tasks);
        if (cell.dataset.state !== state) {
          cell.dataset.state = state;
          cell.className = 'frame state-' + state;
        }
        var frame = framesByNumber[number];
        var thumb = cell.firstChild;
        var url = frame ? thumbnailUrl(frame) : null;
        var img = thumb.querySelector('img');
        if (url) {
          if (!img) {
            thumb.textContent = '';
            img = h('img', { alt: 'Frame ' + number, loading: 'lazy', decoding: 'async', 'data-frame': number });
            var link = h('a', { href: frame.url, target: '_blank', rel: 'noopener', title: 'Frame ' + number + ' (' + frame.file_name + ')' }, [img]);
            thumb.appendChild(link);
          }
          setImage(img, url);
        } else if (!img) {
          setText(thumb, state === 'done' ? 'no preview' : state);
        }
      });
      gridNote.textContent = 'Frames ' + first + '–' + last + ' of ' + job.start_frame + '–' + job.end_frame + '.';
      renderPager();
    }

    function renderPager() {
      var pages = Math.ceil(job.total_frames / GRID_PAGE);
      pager.hidden = pages <= 1;
      if (pages <= 1 || pager.dataset.page === String(page)) return;
      pager.dataset.page = String(page);
      pager.textContent = '';
      pager.appendChild(h('button', { type: 'button', text: 'Previous frames', disabled: page === 0, onclick: function () { page--; tick(); } }));
      pager.appendChild(h('span', { text: ' Page ' + (page + 1) + ' of ' + pages + ' ' }));
      pager.appendChild(h('button', { type: 'button', text: 'Next frames', disabled: page >= pages - 1, onclick: function () { page++; tick(); } }));
    }

    function renderTasks(tasks, framesByNumber) {
      syncRows(taskBody, tasks, function (t) { return t.task_id; }, function (task) {
        var row = h('tr');
        row.cells_ = { frames: h('th', { scope: 'row' }), state: h('td'), node: h('td'), time: h('td'), attempts: h('td', { class: 'num' }), message: h('td', { class: 'message' }), log: h('td') };
        Object.keys(row.cells_).forEach(function (k) { row.appendChild(row.cells_[k]); });
        return row;
      }, function (row, task) {
        var c = row.cells_;
        var range = task.start_frame === task.end_frame ? String(task.start_frame) : task.start_frame + '–' + task.end_frame;
        var kind = task.kind === 'tile' ? 'tile ' + (task.tile_index + 1) + (job.tiles ? ' of ' + job.tiles : '') : task.kind;
        setText(c.frames, task.kind === 'render' ? range : kind + ' · ' + range);
        if (c.state.dataset.status !== task.status) {
          c.state.dataset.status = task.status;
          c.state.textContent = '';
          c.state.appendChild(statusBadge(task.status));
        }
        setText(c.node, task.worker_id ? nodeNames[task.worker_id] || task.worker_id.slice(0, 8) : '–');
        var renderMs = 0;
        var counted = 0;
        // Only renders and stitches make frames; a tile's or video's time is not theirs.
        var makesFrames = task.kind === 'render' || task.kind === 'stitch';
        for (var f = task.start_frame; makesFrames && f <= task.end_frame; f++) {
          var fr = framesByNumber[f];
          if (fr && fr.render_ms !== null) { renderMs += fr.render_ms; counted++; }
        }
        setText(c.time, counted ? duration(renderMs / 1000, true) + (task.status === 'running' ? ' so far' : '') : '–');
        setText(c.attempts, task.attempts);
        setText(c.message, [task.failure_reason, task.message].filter(Boolean).join(': '));
        if (task.log_url && !c.log.firstChild) {
          c.log.appendChild(h('button', { type: 'button', class: 'link', text: 'Log', 'aria-label': 'Log of frames ' + task.start_frame + '–' + task.end_frame, onclick: function () { showLog(task); } }));
        }
      });
    }

    function renderJob() {
      document.title = job.name + ' · Render farm';
      setText(title, job.name);
      statusEl.textContent = '';
      statusEl.appendChild(statusBadge(job.status));
      statusEl.appendChild(document.createTextNode(' ' + job.completed_frames + ' of ' + job.total_frames + ' frames' +
        (job.eta_seconds !== null ? ', about ' + duration(job.eta_seconds) + ' left' : '')));
      bar.value = Math.round(job.progress * 1000) / 10;
      setText(pct, percent(job.progress));
      stats.textContent = '';
      [
        stat('Done', job.completed_frames),
        stat('Rendering', job.running_frames),
        stat('Failed', job.failed_frames),
        stat('Queued', job.queued_frames),
        stat('Mean frame time', job.avg_frame_ms === null ? '–' : duration(job.avg_frame_ms / 1000, true)),
        stat('ETA', job.eta_seconds === null ? '–' : duration(job.eta_seconds)),
        stat('Priority', job.priority),
        stat('Frames', job.start_frame + '–' + job.end_frame),
      ].forEach(function (pair) { stats.appendChild(pair); });
      errorEl.hidden = !job.error;
      setText(errorEl, job.error || '');
      warnings.hidden = !job.warnings.length;
      warnings.textContent = '';
      job.warnings.forEach(function (w) { warnings.appendChild(h('li', { text: w })); });
      var active = job.status === 'queued' || job.status === 'running';
      buttons.pause.disabled = !active;
      buttons.resume.disabled = !(job.status === 'paused' || job.status === 'canceled');
      buttons.cancel.disabled = !(active || job.status === 'paused');
      buttons.requeue.disabled = job.failed_frames === 0;
      if (document.activeElement !== priorityInput) priorityInput.value = job.priority;
      renderVideo(job.preview_video);
    }

    var VIDEO_STATES = { waiting: 'Made once every frame is rendered.', queued: 'Waiting for a node with ffmpeg.', running: 'Being made.', failed: 'Could not be made (see the warnings).' };
    function renderVideo(state) {
      videoSection.hidden = !state;
      if (!state) return;
      setText(videoNote, state.url ? '' : VIDEO_STATES[state.status] || '');
      video.hidden = !state.url;
      if (!state.url || video.dataset.src === state.url) return;
      video.dataset.src = state.url;
      // A <video> cannot send the token: with one, the file comes as a blob: URL.
      var load = token() ? api(state.url, { blob: true }).then(function (blob) {
        var objectUrl = URL.createObjectURL(blob);
        view.urls.push(objectUrl);
        return objectUrl;
      }) : Promise.resolve(state.url);
      load.then(function (src) {
        video.src = src;
        videoLink.href = src;
        videoLink.download = job.name + '.mp4';
        videoLink.hidden = false;
      }, function (err) {
        setText(videoNote, 'Could not load the video: ' + err.message);
        delete video.dataset.src;
      });
    }

    async function showLog(task) {
      var dialog = document.getElementById('log-dialog');
      var pre = document.getElementById('log-text');
      setText(document.getElementById('log-title'), 'Log of frames ' + task.start_frame + '–' + task.end_frame);
      pre.textContent = 'Loading…';
      if (!dialog.open) dialog.showModal();
      try {
        pre.textContent = await api(task.log_url, { text: true });
      } catch (err) {
        pre.textContent = 'Could not load the log: ' + err.message;
      }
    }

    poll(async function () {
      var first;
      if (job) first = job.start_frame + page * GRID_PAGE;
      var results = await Promise.all([
        api('/jobs/' + jobId),
        api('/jobs/' + jobId + '/tasks'),
        api('/workers').catch(function () { return { workers: [] }; }),
      ]);
      if (gen !== view.gen) return;
      job = results[0];
      first = job.start_frame + page * GRID_PAGE;
      var frames = await api('/jobs/' + jobId + '/frames?limit=' + GRID_PAGE + (first > job.start_frame ? '&after=' + (first - 1) : ''));
      if (gen !== view.gen) return;
      results[2].workers.forEach(function (w) { nodeNames[w.worker_id] = w.name; });
      var framesByNumber = {};
      frames.frames.forEach(function (f) { framesByNumber[f.frame] = f; });
      renderJob();
      renderGrid(framesByNumber, results[1].tasks);
      renderTasks(results[1].tasks, framesByNumber);
    });
  }

  // ---------------------------------------------------------------- nodes
  function showNodes() {
    document.title = 'Nodes · Render farm';
    var tbody = h('tbody');
    var empty = h('p', { class: 'empty', hidden: true, text: 'No render nodes yet. Start one with: npm run worker -- --master ' + location.origin });
    main.appendChild(h('h1', { text: 'Render nodes' }));
    main.appendChild(h('table', { class: 'nodes' }, [
      h('caption', { class: 'visually-hidden', text: 'Render nodes' }),
      h('thead', null, [h('tr', null, ['Node', 'State', 'Working on', 'Devices', 'Frames rendered', 'Failures', 'Last seen', 'Actions'].map(function (t) {
        return h('th', { scope: 'col', text: t });
      }))]),
      tbody,
    ]));
    main.appendChild(empty);

    function control(node, action, label) {
      return h('button', { type: 'button', text: label, 'aria-label': label + ' ' + node.name, onclick: function () {
        act(label + ' ' + node.name, function () { return api('/workers/' + node.worker_id + '/' + action, { method: 'POST' }); });
      } });
    }

    poll(async function () {
      var data = await api('/workers');
      empty.hidden = data.workers.length > 0;
      syncRows(tbody, data.workers, function (w) { return w.worker_id; }, function () {
        var row = h('tr');
        row.cells_ = { name: h('th', { scope: 'row' }), state: h('td'), task: h('td'), devices: h('td'), frames: h('td', { class: 'num' }), failures: h('td', { class: 'num' }), seen: h('td'), actions: h('td', { class: 'buttons' }) };
        Object.keys(row.cells_).forEach(function (k) { row.appendChild(row.cells_[k]); });
        return row;
      }, function (row, node) {
        var c = row.cells_;
        setText(c.name, node.name + (node.hostname && node.hostname !== node.name ? ' (' + node.hostname + ')' : ''));
        if (c.state.dataset.state !== node.state) {
          c.state.dataset.state = node.state;
          c.state.textContent = '';
          c.state.appendChild(h('span', { class: 'badge node-' + node.state, text: node.state }));
        }
        if (c.task.dataset.job !== String(node.current_job_id) || c.task.dataset.frame !== String(node.current_frame)) {
          c.task.dataset.job = String(node.current_job_id);
          c.task.dataset.frame = String(node.current_frame);
          c.task.textContent = '';
          if (node.current_job_id) {
            c.task.appendChild(h('a', { href: '#/jobs/' + node.current_job_id, text: 'job ' + node.current_job_id.slice(0, 8) }));
            if (node.current_frame !== null) c.task.appendChild(document.createTextNode(', frame ' + node.current_frame));
          } else {
            c.task.textContent = '–';
          }
        }
        setText(c.devices, node.devices.length ? node.devices.map(function (d) { return d.type + ': ' + d.name; }).join('; ') : (node.threads ? node.threads + ' threads' : '–'));
        setText(c.frames, node.frames_rendered);
        setText(c.failures, node.failures);
        setText(c.seen, ago(node.last_seen_at));
        var wanted = node.enabled ? 'enabled' : 'disabled';
        if (c.actions.dataset.mode !== wanted) {
          c.actions.dataset.mode = wanted;
          c.actions.textContent = '';
          if (node.enabled) {
            c.actions.appendChild(control(node, 'drain', 'Drain'));
            c.actions.appendChild(control(node, 'disable', 'Disable'));
          } else {
            c.actions.appendChild(control(node, 'enable', 'Enable'));
          }
        }
      });
    });
  }

  // ---------------------------------------------------------------- token
  var tokenPanel = document.getElementById('token-panel');
  var tokenInput = document.getElementById('token-input');
  var tokenMessage = document.getElementById('token-message');

  function openTokenPanel(message) {
    tokenMessage.textContent = message || 'Requests carry this token as Authorization: Bearer. It is kept in this browser only.';
    if (tokenPanel.hidden) {
      tokenPanel.hidden = false;
      tokenInput.value = token();
      tokenInput.focus();
    }
  }

  document.getElementById('token-button').addEventListener('click', function () {
    if (tokenPanel.hidden) openTokenPanel(); else tokenPanel.hidden = true;
  });
  document.getElementById('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    try {
      if (tokenInput.value.trim()) localStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage blocked: the token lasts until the page is left */ }
    tokenPanel.hidden = true;
    announce('Token saved');
    route();
  });

  window.addEventListener('hashchange', route);
  route();
})();
`;
