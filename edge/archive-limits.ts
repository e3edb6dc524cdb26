/**
 * Caps on project archives, checked when a job names one (`POST /jobs` with kind "zip"): how many
 * entries the archive has (MAX_ARCHIVE_FILES) and how many bytes they unpack to
 * (MAX_ARCHIVE_BYTES), read from the archive's central directory with two range reads from R2.
 * A zip bomb is refused at submission with a 413 rather than found by a node while it fills its
 * disk; the node checks again, against what it actually writes, while unpacking
 * (worker-node/project-unpack.ts), since a central directory can lie.
 */
import { fail } from './errors.ts';

export interface ArchiveLimits {
  maxFiles: number;
  maxBytes: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_ENTRY_SIGNATURE = 0x02014b50;
/** The end record is 22 bytes plus a comment of up to 65,535. */
const MAX_EOCD_SEARCH = 22 + 0xffff + 20;
/** A central directory is about 50-200 bytes per entry; this bounds what the Worker reads. */
const MAX_CENTRAL_DIRECTORY_BYTES = 32 * 1024 * 1024;

async function readRange(bucket: R2Bucket, key: string, offset: number, length: number): Promise<DataView> {
  const object = await bucket.get(key, { range: { offset, length } });
  if (!object) fail(404, 'the archive vanished while the job was being created');
  const bytes = new Uint8Array(await object.arrayBuffer());
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const u64 = (view: DataView, at: number) => Number(view.getBigUint64(at, true));

function notZip(why: string): never {
  fail(400, `the blob is not a valid .zip archive (${why})`);
}

/** Where the central directory is and how many entries it lists. */
async function findCentralDirectory(bucket: R2Bucket, key: string, size: number): Promise<{ entries: number; offset: number; length: number }> {
  const tailLength = Math.min(size, MAX_EOCD_SEARCH);
  const tailStart = size - tailLength;
  const tail = await readRange(bucket, key, tailStart, tailLength);
  let at = -1;
  for (let i = tail.byteLength - 22; i >= 0; i--) {
    if (tail.getUint32(i, true) === EOCD_SIGNATURE) {
      at = i;
      break;
    }
  }
  if (at < 0) notZip('no end of central directory record');
  let entries = tail.getUint16(at + 10, true);
  let length = tail.getUint32(at + 12, true);
  let offset = tail.getUint32(at + 16, true);
  if (entries === 0xffff || length === 0xffffffff || offset === 0xffffffff) {
    // ZIP64: a locator just before the end record points at the 64-bit end record.
    if (at < 20 || tail.getUint32(at - 20, true) !== ZIP64_LOCATOR_SIGNATURE) notZip('a ZIP64 archive without its locator');
    const recordAt = u64(tail, at - 20 + 8);
    if (recordAt + 56 > size) notZip('a ZIP64 end record outside the file');
    const record = await readRange(bucket, key, recordAt, 56);
    if (record.getUint32(0, true) !== ZIP64_EOCD_SIGNATURE) notZip('a broken ZIP64 end record');
    entries = u64(record, 32);
    length = u64(record, 40);
    offset = u64(record, 48);
  }
  if (offset + length > size) notZip('a central directory outside the file');
  return { entries, offset, length };
}

/** Refuses with 413 an archive over the entry or unpacked-size caps, with 400 one that is no ZIP. */
export async function assertArchiveWithinLimits(bucket: R2Bucket, key: string, size: number, limits: ArchiveLimits): Promise<void> {
  const directory = await findCentralDirectory(bucket, key, size);
  if (directory.entries > limits.maxFiles) {
    fail(413, `the archive has ${directory.entries} entries, over the limit of ${limits.maxFiles} (MAX_ARCHIVE_FILES)`);
  }
  if (directory.length > MAX_CENTRAL_DIRECTORY_BYTES) {
    fail(413, `the archive's central directory is ${directory.length} bytes, over the ${MAX_CENTRAL_DIRECTORY_BYTES} bytes the master reads`);
  }
  if (directory.length === 0) return;
  const view = await readRange(bucket, key, directory.offset, directory.length);
  let unpacked = 0;
  let pos = 0;
  for (let n = 0; n < directory.entries; n++) {
    if (pos + 46 > view.byteLength || view.getUint32(pos, true) !== CENTRAL_ENTRY_SIGNATURE) notZip(`central directory entry ${n + 1} is broken`);
    let entrySize = view.getUint32(pos + 24, true);
    const nameLength = view.getUint16(pos + 28, true);
    const extraLength = view.getUint16(pos + 30, true);
    const commentLength = view.getUint16(pos + 32, true);
    if (entrySize === 0xffffffff) {
      // The real size is the first field of the ZIP64 extra block (id 0x0001).
      const extraEnd = pos + 46 + nameLength + extraLength;
      for (let e = pos + 46 + nameLength; e + 4 <= extraEnd; ) {
        const id = view.getUint16(e, true);
        const dataLength = view.getUint16(e + 2, true);
        if (id === 0x0001 && dataLength >= 8) {
          entrySize = u64(view, e + 4);
          break;
        }
        e += 4 + dataLength;
      }
    }
    unpacked += entrySize;
    if (unpacked > limits.maxBytes) {
      fail(413, `the archive unpacks to more than ${limits.maxBytes} bytes, the limit (MAX_ARCHIVE_BYTES), by the sizes its entries declare`);
    }
    pos += 46 + nameLength + extraLength + commentLength;
  }
}
