/** How times and shares read on the page. */

/** Seconds as "1 h 2 min", "3 min 5 s", "12 s"; with `precise`, short times keep a decimal ("0.4 s"). */
export function duration(seconds: number | null | undefined, precise = false): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  if (precise && seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  const whole = Math.max(0, Math.round(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = whole % 60;
  if (hours > 0) return `${hours} h ${minutes} min`;
  if (minutes > 0) return `${minutes} min ${secs} s`;
  return `${secs} s`;
}

export function ago(iso: string | null): string {
  if (!iso) return '–';
  return `${duration((Date.now() - Date.parse(iso)) / 1000)} ago`;
}

/** A progress of 0 to 1 as "12.3%", never rounded up to 100% before it is. */
export function percent(progress: number): string {
  return `${(Math.floor(progress * 1000) / 10).toFixed(1)}%`;
}

/** A progress of 0 to 1 as a `<progress max="100">` value. */
export function barValue(progress: number): number {
  return Math.round(progress * 1000) / 10;
}

/** A span of frames: "7" or "1–10". */
export function frameSpan(first: number, last: number): string {
  return first === last ? String(first) : `${first}–${last}`;
}
