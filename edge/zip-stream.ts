/**
 * A ZIP of stored objects, streamed: each object is read from R2 and passed through as it is
 * written (stored, not deflated: frames are already compressed images), so memory stays flat
 * whatever the number and size of frames.
 */
import { Zip, ZipPassThrough } from 'fflate';

export interface ZipEntry {
  name: string;
  open: () => Promise<ReadableStream<Uint8Array> | null>;
}

/** Returns a stream of a ZIP holding `entries`, read one after another as the client reads. */
export function zipStream(entries: AsyncIterable<ZipEntry>): ReadableStream<Uint8Array> {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  let pending: Promise<void> = Promise.resolve();
  const zip = new Zip((err, chunk, final) => {
    if (err) {
      writer.abort(err).catch(() => {});
      return;
    }
    // Chain writes so chunks keep their order; awaiting `ready` below applies backpressure.
    pending = pending.then(() => writer.write(chunk));
    if (final) pending = pending.then(() => writer.close());
  });

  (async () => {
    for await (const entry of entries) {
      const body = await entry.open();
      if (!body) continue;
      const file = new ZipPassThrough(entry.name);
      zip.add(file);
      const reader = body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        file.push(value);
        await pending;
        await writer.ready;
      }
      file.push(new Uint8Array(0), true);
    }
    zip.end();
    await pending;
  })().catch((err) => writer.abort(err).catch(() => {}));

  return readable;
}
