/**
 * Numeric and on/off settings read from text (environment variables, flags), parsed the same way
 * by the master (edge/env.ts) and the render node (worker-node/config.ts): unset or empty takes
 * the default; anything else must be a value the setting takes, or the parse throws a
 * SettingError that names the setting and what it got. A typo is never silently a default.
 */

export class SettingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingError';
  }
}

const unset = (raw: string | undefined): raw is undefined => raw === undefined || raw.trim() === '';

/** A whole number from `min` to `max` (default: 0 and up), written in decimal digits ("60s" is refused). */
export function wholeNumberSetting(name: string, raw: string | undefined, fallback: number, range: { min?: number; max?: number } = {}): number {
  if (unset(raw)) return fallback;
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = range;
  const text = raw.trim();
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    const allowed = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
    throw new SettingError(`${name} must be a whole number ${allowed} (got "${raw}")`);
  }
  return n;
}

/** On or off: `true` or `1`, `false` or `0`. */
export function onOffSetting(name: string, raw: string | undefined, fallback: boolean): boolean {
  if (unset(raw)) return fallback;
  const text = raw.trim().toLowerCase();
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  throw new SettingError(`${name} must be true or false (got "${raw}")`);
}
