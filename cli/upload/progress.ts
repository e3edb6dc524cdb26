/**
 * Progress of a long transfer on stderr: a cli-progress bar with bytes, rate and ETA on a
 * terminal; a line every few seconds otherwise (CI logs, pipes), so logs stay readable.
 */
import cliProgress from 'cli-progress';

/** 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export interface Progress {
  /** `done`: bytes complete (skipped + sent); `sent`: bytes that travelled in this run. */
  update(done: number, sent: number): void;
  stop(): void;
}

/** A progress display for `total` bytes, labelled `label`; silent when `enabled` is false. */
export function createProgress(label: string, total: number, enabled = true, stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = Date.now();
  const bytesPerSecond = (sent: number) => {
    const seconds = (Date.now() - started) / 1000;
    return seconds > 0.2 ? sent / seconds : 0;
  };
  const rate = (sent: number) => (bytesPerSecond(sent) > 0 ? `${formatBytes(bytesPerSecond(sent))}/s` : '…');
  /** Time left at this run's rate (skipped bytes cost nothing). */
  const eta = (done: number, sent: number) => {
    const speed = bytesPerSecond(sent);
    if (done >= total) return '0s';
    if (speed <= 0) return '…';
    const seconds = Math.ceil((total - done) / speed);
    return seconds >= 3600
      ? `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`
      : seconds >= 60
        ? `${Math.floor(seconds / 60)}m${seconds % 60}s`
        : `${seconds}s`;
  };
  if (!enabled) return { update() {}, stop() {} };
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: `${label} |{bar}| {percentage}% {done} of {size} at {rate}, ETA {eta}`,
        barCompleteChar: '\u2588',
        barIncompleteChar: '\u2591',
        hideCursor: true,
        fps: 8,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { done: formatBytes(0), size: formatBytes(total), rate: '…', eta: '…' });
    return {
      update(done, sent) {
        bar.update(done, { done: formatBytes(done), size: formatBytes(total), rate: rate(sent), eta: eta(done, sent) });
      },
      stop() {
        bar.stop();
      },
    };
  }
  let lastLine = 0;
  let last = { done: 0, sent: 0 };
  const line = () =>
    stream.write(
      `${label}: ${total ? Math.floor((last.done / total) * 100) : 100}% (${formatBytes(last.done)} of ${formatBytes(total)}, ${rate(last.sent)})\n`,
    );
  return {
    update(done, sent) {
      last = { done, sent };
      if (Date.now() - lastLine >= 2_000) {
        lastLine = Date.now();
        line();
      }
    },
    stop() {
      line();
    },
  };
}
