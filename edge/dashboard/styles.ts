/**
 * The dashboard's style sheet, served as /dashboard.css. System fonts, no images; follows the
 * system's light or dark setting; states are told by text as well as colour; visible focus.
 */
export const DASHBOARD_CSS = `
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --panel: #f6f8fa;
  --accent: #0a58ca; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --info: #0969da;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  line-height: 1.45;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #30363d; --panel: #161b22;
    --accent: #58a6ff; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --info: #58a6ff; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.skip { position: absolute; left: -9999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--bg); padding: .5rem; z-index: 10; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
header { display: flex; align-items: center; gap: 1rem; padding: .5rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header .brand { font-weight: 700; margin-right: 1rem; }
nav a { margin-right: 1rem; text-decoration: none; font-weight: 600; }
nav a[aria-current="page"] { text-decoration: underline; text-underline-offset: .3em; }
header #token-button { margin-left: auto; }
#token-panel { padding: .75rem 1rem; border-bottom: 1px solid var(--line); }
#token-panel form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
main { padding: 1rem; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: .25rem 0 .75rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
thead th { color: var(--muted); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; }
td.message { max-width: 32rem; overflow-wrap: anywhere; color: var(--muted); }
td.progress { min-width: 12rem; }
progress { width: 10rem; height: 1rem; vertical-align: middle; accent-color: var(--ok); }
.job-progress progress { width: min(40rem, 100%); height: 1.4rem; }
.pct { margin-left: .5rem; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 1rem; border: 1px solid currentColor; font-size: .8rem; font-weight: 600; }
.status-completed, .node-rendering { color: var(--ok); }
.status-running, .node-idle { color: var(--info); }
.status-queued, .status-paused, .node-draining, .node-disabled { color: var(--warn); }
.status-failed, .status-canceled, .node-offline { color: var(--bad); }
.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .5rem 1rem; margin: 1rem 0; }
.stats > div { min-width: 0; }
.stats dt { color: var(--muted); font-size: .8rem; }
.stats dd { margin: 0; font-size: 1.1rem; font-variant-numeric: tabular-nums; }
.job-error { border-left: 4px solid var(--bad); padding: .5rem .75rem; background: var(--panel); overflow-wrap: anywhere; }
.warnings { border-left: 4px solid var(--warn); padding: .5rem .75rem .5rem 2rem; background: var(--panel); }
.controls .buttons, td.buttons { display: flex; flex-wrap: wrap; gap: .5rem; }
.priority { display: flex; gap: .5rem; align-items: center; margin-top: .75rem; flex-wrap: wrap; }
.priority input { width: 5rem; }
button, input { font: inherit; }
button { padding: .35rem .8rem; border: 1px solid var(--line); border-radius: .4rem; background: var(--panel); color: var(--fg); cursor: pointer; }
button:hover:not(:disabled) { border-color: var(--accent); }
button:disabled { opacity: .45; cursor: not-allowed; }
button.danger { color: var(--bad); }
button.link { border: none; background: none; color: var(--accent); text-decoration: underline; padding: 0; }
input { padding: .3rem .5rem; border: 1px solid var(--line); border-radius: .3rem; background: var(--bg); color: var(--fg); }
.frames { list-style: none; padding: 0; margin: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(8.5rem, 1fr)); gap: .5rem; }
.frame { border: 1px solid var(--line); border-radius: .4rem; overflow: hidden; background: var(--panel); }
.frame .thumb { aspect-ratio: 16 / 9; display: flex; align-items: center; justify-content: center; color: var(--muted); font-size: .8rem; }
.frame .thumb a { display: block; width: 100%; height: 100%; }
.frame img { width: 100%; height: 100%; object-fit: contain; display: block; background: #000; }
.frame-label { display: block; padding: .1rem .4rem; font-size: .8rem; font-variant-numeric: tabular-nums; border-top: 1px solid var(--line); }
.frame.state-rendering, .frame.state-claimed { border-color: var(--info); }
.frame.state-rendering .thumb { color: var(--info); font-weight: 600; }
.frame.state-failed { border-color: var(--bad); }
.frame.state-failed .thumb { color: var(--bad); font-weight: 600; }
.frame.state-done { border-color: var(--ok); }
.pager { margin: .5rem 0; }
.grid-note, .crumbs, .empty { color: var(--muted); }
#error { margin: 0; padding: .5rem 1rem; background: var(--bad); color: #fff; }
dialog { width: min(60rem, 95vw); max-height: 85vh; border: 1px solid var(--line); border-radius: .5rem; background: var(--bg); color: var(--fg); }
dialog pre { max-height: 65vh; overflow: auto; background: var(--panel); padding: .75rem; font-size: .8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
@media (max-width: 700px) { table.tasks :is(th, td):nth-child(6), table.jobs :is(th, td):nth-child(n+7) { display: none; } }
/* The API page (/docs). */
.op { border-top: 1px solid var(--line); padding: .5rem 0; }
.op table { margin: .5rem 0; }
.method { font-family: ui-monospace, monospace; font-weight: 700; }
.method-get { color: var(--info); }
.method-post, .method-put, .method-patch { color: var(--ok); }
.method-delete { color: var(--bad); }
.access { color: var(--muted); }
@media (prefers-reduced-motion: reduce) { * { transition: none !important; animation: none !important; } }
`;
