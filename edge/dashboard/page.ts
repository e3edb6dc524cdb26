/**
 * The dashboard's HTML shell, served at `/`. It holds no data: the script fetches everything
 * from the API (with the token the user pasted, when the master requires one), so the page
 * itself can be public.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Render farm</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
  <span class="brand">Render farm</span>
  <nav aria-label="Main">
    <a href="#/">Jobs</a>
    <a href="#/nodes">Nodes</a>
    <a href="/docs">API</a>
    <a href="/addon.zip" download title="Install in Blender: Preferences > Add-ons > Install">Blender add-on</a>
  </nav>
  <button type="button" id="token-button" aria-controls="token-panel">Token</button>
</header>
<div id="token-panel" hidden>
  <form id="token-form">
    <label for="token-input">API token</label>
    <input id="token-input" type="password" autocomplete="off" size="40">
    <button type="submit">Save</button>
    <span id="token-message"></span>
  </form>
</div>
<p id="error" role="alert" hidden></p>
<main id="main" tabindex="-1">
  <noscript>The dashboard needs JavaScript. The same information is in the API: <a href="/docs">/docs</a>.</noscript>
</main>
<div id="live" class="visually-hidden" role="status" aria-live="polite"></div>
<dialog id="log-dialog" aria-labelledby="log-title">
  <h2 id="log-title">Log</h2>
  <pre id="log-text"></pre>
  <form method="dialog"><button type="submit">Close</button></form>
</dialog>
</body>
</html>
`;
