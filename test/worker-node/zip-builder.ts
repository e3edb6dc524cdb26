/**
 * Builds ZIP archives byte by byte, including the malformed and malicious ones that no honest
 * zip tool writes (yazl refuses `..` and absolute names): names that escape, symbolic links,
 * entries that lie about their size.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export interface RawEntry {
  /** The name exactly as stored (no checks, no normalisation). */
  name: string;
  data?: Buffer;
  /** Deflate the data (default: stored). */
  deflate?: boolean;
  /** Already-compressed bytes to store as the entry's data (with `deflate`), instead of compressing `data`. */
  compressed?: Buffer;
  /** The uncompressed size written in the headers (default: the real one). */
  declaredSize?: number;
  /** Unix mode for the external attributes (e.g. 0o120777 for a symlink); default a file or folder. */
  unixMode?: number;
}

/** A ZIP holding `entries` in order, made by "Unix" so modes count. */
export function buildZip(entries: RawEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const data = e.data ?? Buffer.alloc(0);
    const body = e.compressed ?? (e.deflate ? deflateRawSync(data) : data);
    const method = e.deflate || e.compressed ? 8 : 0;
    const size = e.declaredSize ?? data.length;
    const crc = crc32(data);
    const isDir = e.name.endsWith('/');
    const mode = e.unixMode ?? (isDir ? 0o040755 : 0o100644);

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // names in UTF-8
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, body);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((mode & 0xffff) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}
