// Reads the server name (SNI) from a TLS ClientHello without consuming it, so the
// connection can still be terminated here or forwarded byte for byte. Every length is
// checked: a malformed hello is an error, never an exception or an out-of-range read.

export type HelloResult = { state: 'incomplete' } | { state: 'done'; serverName: string | undefined } | { state: 'error'; reason: string };

/** Largest ClientHello we wait for (one TLS record, plus header). */
export const MAX_HELLO = 16 * 1024 + 5;

export function readClientHello(buf: Buffer): HelloResult {
  if (buf.length < 5) return { state: 'incomplete' };
  if (buf[0] !== 0x16) return { state: 'error', reason: 'not a TLS handshake record' };
  if (buf[1] !== 0x03) return { state: 'error', reason: 'unsupported record version' };
  const recordLen = buf.readUInt16BE(3);
  if (recordLen < 4 || recordLen > 16 * 1024) return { state: 'error', reason: 'bad record length' };
  if (buf.length < 5 + recordLen) return { state: 'incomplete' };
  const rec = buf.subarray(5, 5 + recordLen);
  if (rec[0] !== 0x01) return { state: 'error', reason: 'not a ClientHello' };
  const helloLen = (rec[1]! << 16) | (rec[2]! << 8) | rec[3]!;
  if (helloLen + 4 > rec.length) return { state: 'error', reason: 'ClientHello spans records (unsupported)' };
  const h = rec.subarray(4, 4 + helloLen);
  let p = 2 + 32; // client_version, random
  const need = (n: number) => p + n <= h.length;
  if (!need(1)) return { state: 'error', reason: 'truncated session id' };
  p += 1 + h[p]!;
  if (!need(2)) return { state: 'error', reason: 'truncated cipher suites' };
  p += 2 + h.readUInt16BE(p);
  if (!need(1)) return { state: 'error', reason: 'truncated compression methods' };
  p += 1 + h[p]!;
  if (p === h.length) return { state: 'done', serverName: undefined }; // no extensions
  if (!need(2)) return { state: 'error', reason: 'truncated extensions' };
  const extEnd = p + 2 + h.readUInt16BE(p);
  p += 2;
  if (extEnd > h.length) return { state: 'error', reason: 'extensions overrun the hello' };
  while (p + 4 <= extEnd) {
    const type = h.readUInt16BE(p);
    const len = h.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return { state: 'error', reason: 'extension overruns' };
    if (type === 0x0000) {
      // server_name: list length, then entries of (type, length, name)
      if (len < 2) return { state: 'error', reason: 'bad server_name extension' };
      let q = p + 2;
      const listEnd = p + 2 + h.readUInt16BE(p);
      if (listEnd > p + len) return { state: 'error', reason: 'bad server_name list' };
      while (q + 3 <= listEnd) {
        const nameType = h[q]!;
        const nameLen = h.readUInt16BE(q + 1);
        q += 3;
        if (q + nameLen > listEnd) return { state: 'error', reason: 'bad server name length' };
        if (nameType === 0) {
          const name = h.subarray(q, q + nameLen).toString('ascii').toLowerCase();
          if (!/^[a-z0-9.-]{1,253}$/.test(name)) return { state: 'error', reason: 'invalid server name' };
          return { state: 'done', serverName: name };
        }
        q += nameLen;
      }
      return { state: 'done', serverName: undefined };
    }
    p += len;
  }
  return { state: 'done', serverName: undefined };
}
