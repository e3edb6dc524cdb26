/**
 * A ZIP of stored objects, streamed with client-zip: each object is passed through as the client
 * reads (stored, not deflated: frames are already compressed images), so memory stays flat
 * whatever the number and size of frames, and client-zip writes ZIP64 records once a size or an
 * offset passes 4 GiB.
 *
 * client-zip 2.5.1 does not write them for the other ZIP64 case, more than 65,534 entries: its end
 * record then says 65,535 (the 16-bit field's "read the ZIP64 record" value) with no ZIP64 record
 * to read, and strict readers (yauzl, Java's) refuse the archive. `zip64EndRecords` adds the
 * missing records. Nothing here is Workers-only, so Node tests build archives with it too.
 */
import { makeZip } from 'client-zip';

export interface ZipEntry {
  /** The entry's file name inside the archive. */
  name: string;
  lastModified: Date;
  /** The contents, read once, when the archive reaches this entry. */
  body: ReadableStream<Uint8Array>;
}

/** End of central directory record, without a comment: 22 bytes. */
const EOCD_BYTES = 22;
const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_LOCATOR_BYTES = 20;
/** Bytes held back from the end of the stream: the end record and what may be a locator before it. */
const HELD_BYTES = EOCD_BYTES + ZIP64_LOCATOR_BYTES;

/**
 * Returns a ZIP holding `entries`, each read from its stream only when the archive reaches it
 * (one at a time, as the client reads), with ZIP64 records wherever the archive needs them.
 */
export function zipStream(entries: AsyncIterable<ZipEntry>): ReadableStream<Uint8Array> {
  let count = 0;
  async function* inputs() {
    for await (const entry of entries) {
      count++;
      yield { name: entry.name, lastModified: entry.lastModified, input: entry.body };
    }
  }
  return makeZip(inputs()).pipeThrough(zip64EndRecords(() => count));
}

/**
 * Passes a ZIP through, holding back its last bytes: when its end record says 65,535 entries
 * (the 16-bit maximum) and no ZIP64 locator precedes it, a ZIP64 end record and locator holding
 * the real count (`entries()`) go in before it. The end record's sizes and offsets are then below
 * 4 GiB (client-zip writes the ZIP64 records itself otherwise), so they are copied as they are.
 */
function zip64EndRecords(entries: () => number): TransformStream<Uint8Array, Uint8Array> {
  let held = new Uint8Array(0);
  return new TransformStream({
    transform(chunk, controller) {
      if (chunk.length >= HELD_BYTES) {
        if (held.length > 0) controller.enqueue(held);
        if (chunk.length > HELD_BYTES) controller.enqueue(chunk.subarray(0, chunk.length - HELD_BYTES));
        held = chunk.slice(chunk.length - HELD_BYTES);
        return;
      }
      const joined = new Uint8Array(held.length + chunk.length);
      joined.set(held);
      joined.set(chunk, held.length);
      const cut = Math.max(0, joined.length - HELD_BYTES);
      if (cut > 0) controller.enqueue(joined.subarray(0, cut));
      held = joined.slice(cut);
    },
    flush(controller) {
      const view = new DataView(held.buffer, held.byteOffset, held.byteLength);
      const eocd = held.length - EOCD_BYTES;
      const needsZip64 =
        eocd >= 0 &&
        view.getUint32(eocd, true) === EOCD_SIGNATURE &&
        view.getUint16(eocd + 10, true) === 0xffff &&
        !(eocd >= ZIP64_LOCATOR_BYTES && view.getUint32(eocd - ZIP64_LOCATOR_BYTES, true) === ZIP64_LOCATOR_SIGNATURE);
      if (!needsZip64) {
        if (held.length > 0) controller.enqueue(held);
        return;
      }
      const directoryBytes = view.getUint32(eocd + 12, true);
      const directoryOffset = view.getUint32(eocd + 16, true);
      const records = new DataView(new ArrayBuffer(56 + ZIP64_LOCATOR_BYTES));
      // ZIP64 end of central directory record (APPNOTE 4.3.14), made by and needing version 4.5.
      records.setUint32(0, ZIP64_EOCD_SIGNATURE, true);
      records.setBigUint64(4, 44n, true);
      records.setUint16(12, 0x032d, true);
      records.setUint16(14, 45, true);
      records.setBigUint64(24, BigInt(entries()), true);
      records.setBigUint64(32, BigInt(entries()), true);
      records.setBigUint64(40, BigInt(directoryBytes), true);
      records.setBigUint64(48, BigInt(directoryOffset), true);
      // Its locator (4.3.15): the record starts right after the central directory; one disk.
      records.setUint32(56, ZIP64_LOCATOR_SIGNATURE, true);
      records.setBigUint64(64, BigInt(directoryOffset + directoryBytes), true);
      records.setUint32(72, 1, true);
      if (eocd > 0) controller.enqueue(held.subarray(0, eocd));
      controller.enqueue(new Uint8Array(records.buffer));
      controller.enqueue(held.subarray(eocd));
    },
  });
}
