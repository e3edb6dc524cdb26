/**
 * Frame thumbnails. Without a token the browser loads an image itself (lazily). With one, the image
 * is fetched with it (img tags send no headers) once it scrolls into view, four at a time, so a
 * grid of hundreds of frames stays within the master's rate limit.
 */
import { getBlob } from './api.ts';
import { token } from './token.ts';
import { objectUrl } from './view.ts';

const AT_ONCE = 4;
let queue: HTMLImageElement[] = [];
let inFlight = 0;

const observer = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      queue.push(entry.target as HTMLImageElement);
    }
    pump();
  },
  { rootMargin: '300px' },
);

function pump(): void {
  while (inFlight < AT_ONCE && queue.length > 0) {
    const img = queue.shift()!;
    const url = img.dataset.src!;
    if (!img.isConnected || img.dataset.loaded === url) continue;
    inFlight++;
    void load(img, url).finally(() => {
      inFlight--;
      pump();
    });
  }
}

async function load(img: HTMLImageElement, url: string): Promise<void> {
  try {
    const blob = await getBlob(url);
    if (img.dataset.src !== url) return;
    img.src = objectUrl(blob);
    img.dataset.loaded = url;
  } catch {
    img.alt = `${img.alt.replace(/ \(could not load\)$/, '')} (could not load)`;
  }
}

export function setImage(img: HTMLImageElement, url: string): void {
  if (img.dataset.src === url) return;
  img.dataset.src = url;
  if (token()) observer.observe(img);
  else img.src = url;
}

/** Drops the images waiting for the view that ended. */
export function clearImageQueue(): void {
  queue = [];
}
