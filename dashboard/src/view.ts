/**
 * The view on screen and its refresh: the page polls the API every POLL_MS while the tab is
 * visible (HIDDEN_POLL_MS while hidden). Each route starts a new view; an answer that comes back
 * for an older one is dropped.
 */
import { messageOf } from './api.ts';
import { byId } from './dom.ts';

const POLL_MS = 2000;
const HIDDEN_POLL_MS = 10000;

export const main = byId('main');
const live = byId('live');
const errorBox = byId('error');

let generation = 0;
let refresh: (() => Promise<void>) | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;
/** blob: URLs made for this view (frames and videos fetched with a token), revoked when it ends. */
let objectUrls: string[] = [];

/** Ends the current view and starts a blank one; returns its generation. */
export function newView(): number {
  generation++;
  refresh = null;
  clearTimeout(timer);
  for (const url of objectUrls) URL.revokeObjectURL(url);
  objectUrls = [];
  showError(null);
  main.textContent = '';
  return generation;
}

/** Whether `view` (a generation from newView) is still the one on screen. */
export const isCurrent = (view: number): boolean => view === generation;

/** A blob: URL for `blob`, revoked when the view ends. */
export function objectUrl(blob: Blob): string {
  const url = URL.createObjectURL(blob);
  objectUrls.push(url);
  return url;
}

/** Makes `fn` the view's refresh and runs it now, then every POLL_MS. */
export function poll(fn: () => Promise<void>): void {
  refresh = fn;
  void tick();
}

/** Refreshes the view now (after an action, or when the tab shows again). */
export async function tick(): Promise<void> {
  clearTimeout(timer);
  const view = generation;
  if (!refresh) return;
  try {
    await refresh();
    if (isCurrent(view)) showError(null);
  } catch (err) {
    if (isCurrent(view)) showError(messageOf(err));
  }
  if (isCurrent(view)) timer = setTimeout(() => void tick(), document.hidden ? HIDDEN_POLL_MS : POLL_MS);
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void tick();
});

function showError(message: string | null): void {
  errorBox.textContent = message ?? '';
  errorBox.hidden = !message;
}

/** Tells screen readers what happened. */
export function announce(message: string): void {
  live.textContent = '';
  setTimeout(() => {
    live.textContent = message;
  }, 50);
}

/** Runs a user's action: announces it and refreshes, or shows why it failed. */
export async function act(label: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
    announce(label);
    void tick();
  } catch (err) {
    showError(`${label} failed: ${messageOf(err)}`);
  }
}
