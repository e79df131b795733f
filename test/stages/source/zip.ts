// A zip writer for tests: stored or deflated entries, with headers that can lie (the hostile archives).
import zlib from 'node:zlib';

export interface Entry { name: string; body: Buffer; deflate?: boolean; claim?: number }

/** A zip of `entries` (stored or deflated); `claim` overrides the uncompressed size written in the headers. */
export function zip(entries: Entry[], opts: { zip64Offset?: bigint } = {}): Buffer {
  const locals: Buffer[] = [], centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = e.deflate ? zlib.deflateRawSync(e.body) : e.body;
    const name = Buffer.from(e.name);
    const usize = e.claim ?? e.body.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(data.length, 18); local.writeUInt32LE(usize, 22); local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(e.deflate ? 8 : 0, 10);
    central.writeUInt32LE(data.length, 20); central.writeUInt32LE(usize, 24); central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    centrals.push(central, name);
    offset += local.length + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const tail: Buffer[] = [];
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  if (opts.zip64Offset !== undefined) {
    // A zip64 locator whose end-record offset is the given (bad) value.
    end.writeUInt32LE(0xffffffff, 16);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0); loc.writeBigUInt64LE(opts.zip64Offset, 8);
    tail.push(loc);
  }
  return Buffer.concat([...locals, cd, ...tail, end]);
}
