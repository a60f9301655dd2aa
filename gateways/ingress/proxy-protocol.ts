// PROXY protocol v2 (binary) headers: how a node forwarding a client connection to the node
// that holds the tunnel tells it the client's real address.
import { isIP, isIPv4 } from 'node:net';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export interface ProxyAddresses {
  source: { address: string; port: number };
  destination: { address: string; port: number };
}

/** 16 bytes of an IPv6 address, including forms that end in a dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4). */
function ipv6Bytes(address: string): Buffer {
  let addr = address.replace(/%.*$/, ''); // a zone index names a local interface, not an address
  const quad = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(addr);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    addr = `${addr.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g) => { const n = parseInt(g || '0', 16); return [n >> 8, n & 0xff]; }));
}

const MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export function encodeProxyV2(a: ProxyAddresses): Buffer {
  let src = a.source.address.replace(MAPPED, '$1');
  let dst = a.destination.address.replace(MAPPED, '$1');
  if (!(isIP(src) && isIP(dst))) return Buffer.concat([SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]); // LOCAL (version 2, command 0): no address to tell
  const v4 = isIPv4(src) && isIPv4(dst);
  // One side of each family (an IPv4 client on a dual-stack listener): both go as IPv6, the IPv4 one mapped.
  if (!v4) [src, dst] = [src, dst].map((x) => (isIPv4(x) ? `::ffff:${x}` : x)) as [string, string];
  const addrs = v4
    ? Buffer.concat([Buffer.from(src.split('.').map(Number)), Buffer.from(dst.split('.').map(Number))])
    : Buffer.concat([ipv6Bytes(src), ipv6Bytes(dst)]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(a.source.port, 0);
  ports.writeUInt16BE(a.destination.port, 2);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(addrs.length + 4);
  return Buffer.concat([SIGNATURE, Buffer.from([0x21, v4 ? 0x11 : 0x21]), len, addrs, ports]);
}

/** Parses a header at the start of `buf`; returns the addresses and the header length, or an error. */
export function decodeProxyV2(buf: Buffer): { addresses: ProxyAddresses | null; length: number } | { error: string } {
  if (buf.length < 16) return { error: 'short header' };
  if (!buf.subarray(0, 12).equals(SIGNATURE)) return { error: 'not a PROXY v2 header' };
  if (buf[12]! >> 4 !== 2) return { error: 'unsupported version' };
  const length = 16 + buf.readUInt16BE(14);
  if (buf.length < length) return { error: 'truncated header' };
  if ((buf[12]! & 0x0f) === 0) return { addresses: null, length }; // LOCAL
  const fam = buf[13];
  if (fam === 0x00) return { addresses: null, length }; // UNSPEC: the sender knows no address (spec: accept, use none)
  if (fam === 0x11 && length >= 28) {
    const b = buf.subarray(16);
    return { addresses: { source: { address: [...b.subarray(0, 4)].join('.'), port: b.readUInt16BE(8) }, destination: { address: [...b.subarray(4, 8)].join('.'), port: b.readUInt16BE(10) } }, length };
  }
  if (fam === 0x21 && length >= 52) {
    const b = buf.subarray(16);
    const ip6 = (x: Buffer) => {
      // An IPv4-mapped address is the IPv4 client it stands for; others in canonical (compressed) form.
      if (x.subarray(0, 10).every((b) => b === 0) && x[10] === 0xff && x[11] === 0xff) return [...x.subarray(12)].join('.');
      return new URL(`http://[${Array.from({ length: 8 }, (_, i) => x.readUInt16BE(i * 2).toString(16)).join(':')}]`).hostname.slice(1, -1);
    };
    return { addresses: { source: { address: ip6(b.subarray(0, 16)), port: b.readUInt16BE(32) }, destination: { address: ip6(b.subarray(16, 32)), port: b.readUInt16BE(34) } }, length };
  }
  return { error: 'unsupported address family' };
}
