// Reads a query's question and EDNS record by hand, before any decoding library sees it:
// every byte must belong to the one question or the one OPT record, so a query with junk
// after it is malformed (FORMERR), not a new cache entry. What decides the answer becomes
// the cache key: name as asked (the answer echoes its case), type, class, RD, opcode, the
// OPT record's payload size and DO bit; the id and the EDNS options do not change it.

/** Longest query accepted: a full name (255), its type and class, and an OPT record with room for options. */
export const MAX_QUERY = 1024;

export type QueryKey = { ok: true; key: string } | { ok: false; reason: string };

export function queryKey(msg: Buffer, transport: 'udp' | 'tcp'): QueryKey {
  if (msg.length > MAX_QUERY) return { ok: false, reason: 'oversized query' };
  if (msg.length < 12) return { ok: false, reason: 'short header' };
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  if (qd !== 1 || an !== 0 || ns !== 0 || ar > 1) return { ok: false, reason: 'not one question' };
  let p = 12;
  for (let labels = 0; ; labels++) {
    if (p >= msg.length || labels > 127) return { ok: false, reason: 'truncated name' };
    const len = msg[p]!;
    if (len === 0) break;
    if (len > 63) return { ok: false, reason: 'compressed or bad label' }; // no pointers in a question
    p += 1 + len;
  }
  p += 1;
  if (p - 12 > 255) return { ok: false, reason: 'name too long' };
  if (p + 4 > msg.length) return { ok: false, reason: 'truncated question' };
  const question = msg.toString('latin1', 12, p + 4);
  p += 4;
  let edns = 'none';
  if (ar === 1) {
    // OPT: root name, type 41, class = payload size, ttl = ext-rcode/version/flags, rdata.
    if (p + 11 > msg.length || msg[p] !== 0 || msg.readUInt16BE(p + 1) !== 41) return { ok: false, reason: 'additional record is not OPT' };
    const payload = msg.readUInt16BE(p + 3);
    const version = msg[p + 6]!;
    const doBit = (msg[p + 7]! & 0x80) !== 0;
    const rdlen = msg.readUInt16BE(p + 9);
    p += 11 + rdlen;
    if (p > msg.length) return { ok: false, reason: 'truncated OPT record' };
    edns = `${Math.max(512, Math.min(payload, 4096))}/${version}/${doBit ? 1 : 0}`;
  }
  if (p !== msg.length) return { ok: false, reason: 'trailing bytes' };
  const flags = msg.readUInt16BE(2) & 0x7900; // opcode and RD
  return { ok: true, key: `${transport}|${flags}|${edns}|${question}` };
}
