/**
 * The API token, pasted by the user under "Token" and kept in this browser's localStorage only.
 * Requests carry it as `Authorization: Bearer`; a master in anonymous mode needs none.
 */
import { byId } from './dom.ts';

const TOKEN_KEY = 'farm-token';
/** The token while storage is blocked (private modes, policies): it lasts until the page is left. */
let unstored = '';

export function token(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return unstored;
  }
}

const panel = byId('token-panel');
const input = byId<HTMLInputElement>('token-input');
const message = byId('token-message');

export function openTokenPanel(text = 'Requests carry this token as Authorization: Bearer. It is kept in this browser only.'): void {
  message.textContent = text;
  if (!panel.hidden) return;
  panel.hidden = false;
  input.value = token();
  input.focus();
}

/** Wires the Token button and form; `saved` runs once a token was saved (or cleared). */
export function initTokenPanel(saved: () => void): void {
  byId('token-button').addEventListener('click', () => {
    if (panel.hidden) openTokenPanel();
    else panel.hidden = true;
  });
  byId('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    try {
      if (value) localStorage.setItem(TOKEN_KEY, value);
      else localStorage.removeItem(TOKEN_KEY);
    } catch {
      unstored = value;
    }
    panel.hidden = true;
    saved();
  });
}
