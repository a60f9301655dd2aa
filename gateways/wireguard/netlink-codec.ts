// The kernel's WireGuard generic-netlink family ("wireguard", version 1), encoded and decoded
// here from its specification (include/uapi/linux/wireguard.h): commands, attribute numbers
// and types. Pure functions: test/tunnels/wireguard-codec.test.ts checks the bytes.
// Netlink attributes: u16 length (header included, padding not), u16 type, payload, padded
// to 4 bytes; nested attributes carry NLA_F_NESTED; integers are host order (little-endian
// on every machine this runs on).
import type { DeviceSettings, DeviceState, PeerConfig, PeerStats } from './device.ts';

export const WG_GENL_NAME = 'wireguard';
export const WG_GENL_VERSION = 1;
export const WG_CMD = { GET_DEVICE: 0, SET_DEVICE: 1 } as const;
export const WGDEVICE_A = { IFINDEX: 1, IFNAME: 2, PRIVATE_KEY: 3, PUBLIC_KEY: 4, FLAGS: 5, LISTEN_PORT: 6, FWMARK: 7, PEERS: 8 } as const;
export const WGDEVICE_F_REPLACE_PEERS = 1;
export const WGPEER_A = { PUBLIC_KEY: 1, PRESHARED_KEY: 2, FLAGS: 3, ENDPOINT: 4, PERSISTENT_KEEPALIVE_INTERVAL: 5, LAST_HANDSHAKE_TIME: 6, RX_BYTES: 7, TX_BYTES: 8, ALLOWEDIPS: 9, PROTOCOL_VERSION: 10 } as const;
export const WGPEER_F = { REMOVE_ME: 1, REPLACE_ALLOWEDIPS: 2, UPDATE_ONLY: 4 } as const;
export const WGALLOWEDIP_A = { FAMILY: 1, IPADDR: 2, CIDR_MASK: 3 } as const;
export const NLA_F_NESTED = 0x8000;
const AF_INET = 2;
const AF_INET6 = 10;

const pad4 = (n: number) => (n + 3) & ~3;

export function attr(type: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(pad4(4 + payload.length));
  out.writeUInt16LE(4 + payload.length, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}
const nested = (type: number, children: Buffer[]) => attr(type | NLA_F_NESTED, Buffer.concat(children));
const u8 = (type: number, v: number) => attr(type, Buffer.from([v]));
const u16 = (type: number, v: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return attr(type, b); };
const u32 = (type: number, v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return attr(type, b); };
const key = (type: number, b64: string) => attr(type, Buffer.from(b64, 'base64'));

function ipBytes(ip: string): { family: number; bytes: Buffer } {
  if (ip.includes(':')) {
    const [head, tail = ''] = ip.split('::');
    const parts = (s: string) => (s ? s.split(':') : []);
    const h = parts(head!), t = parts(tail);
    const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    const bytes = Buffer.alloc(16);
    groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
    return { family: AF_INET6, bytes };
  }
  return { family: AF_INET, bytes: Buffer.from(ip.split('.').map(Number)) };
}

function allowedIp(index: number, cidr: string): Buffer {
  const [ip, mask] = cidr.split('/');
  const { family, bytes } = ipBytes(ip!);
  return nested(index, [u16(WGALLOWEDIP_A.FAMILY, family), attr(WGALLOWEDIP_A.IPADDR, bytes), u8(WGALLOWEDIP_A.CIDR_MASK, Number(mask ?? (family === AF_INET ? 32 : 128)))]);
}

/** struct sockaddr_in / sockaddr_in6 for WGPEER_A_ENDPOINT (port and address in network order). */
function sockaddr(endpoint: string): Buffer {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(endpoint);
  if (!m) throw new Error(`endpoint ${endpoint} is not host:port`);
  const { family, bytes } = ipBytes(m[1]!);
  const out = Buffer.alloc(family === AF_INET ? 16 : 28);
  out.writeUInt16LE(family, 0);
  out.writeUInt16BE(Number(m[2]), 2);
  bytes.copy(out, family === AF_INET ? 4 : 8);
  return out;
}

function peer(index: number, p: PeerConfig | { publicKey: string; remove: true }): Buffer {
  if ('remove' in p) return nested(index, [key(WGPEER_A.PUBLIC_KEY, p.publicKey), u32(WGPEER_A.FLAGS, WGPEER_F.REMOVE_ME)]);
  const children = [key(WGPEER_A.PUBLIC_KEY, p.publicKey), u32(WGPEER_A.FLAGS, WGPEER_F.REPLACE_ALLOWEDIPS)];
  if (p.endpoint) children.push(attr(WGPEER_A.ENDPOINT, sockaddr(p.endpoint)));
  children.push(u16(WGPEER_A.PERSISTENT_KEEPALIVE_INTERVAL, p.keepaliveSeconds ?? 0));
  children.push(nested(WGPEER_A.ALLOWEDIPS, p.allowedIps.map((c, i) => allowedIp(i, c))));
  return nested(index, children);
}

const ifname = (name: string) => attr(WGDEVICE_A.IFNAME, Buffer.from(`${name}\0`));

/** Peers per SET_DEVICE message: a big peer list goes in several (the first replaces, the rest add). */
export const PEERS_PER_MESSAGE = 200;

/** SET_DEVICE payloads: key, port and every peer, replacing the ones the device had. */
export function encodeConfigure(name: string, s: DeviceSettings): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i === 0 || i < s.peers.length; i += PEERS_PER_MESSAGE) {
    const attrs = [ifname(name)];
    if (i === 0) attrs.push(key(WGDEVICE_A.PRIVATE_KEY, s.privateKey), u16(WGDEVICE_A.LISTEN_PORT, s.listenPort), u32(WGDEVICE_A.FLAGS, WGDEVICE_F_REPLACE_PEERS));
    const batch = s.peers.slice(i, i + PEERS_PER_MESSAGE);
    if (batch.length) attrs.push(nested(WGDEVICE_A.PEERS, batch.map((p, j) => peer(j, p))));
    chunks.push(Buffer.concat(attrs));
  }
  return chunks;
}

export const encodeSetPeer = (name: string, p: PeerConfig) => Buffer.concat([ifname(name), nested(WGDEVICE_A.PEERS, [peer(0, p)])]);
export const encodeRemovePeer = (name: string, publicKey: string) => Buffer.concat([ifname(name), nested(WGDEVICE_A.PEERS, [peer(0, { publicKey, remove: true })])]);
/** GET_DEVICE (sent as a dump request) names the device. */
export const encodeGet = (name: string) => ifname(name);

/** The attributes of a payload: type (nested flag cleared) -> value, in order. */
export function parseAttrs(buf: Buffer): Array<{ type: number; value: Buffer }> {
  const out: Array<{ type: number; value: Buffer }> = [];
  for (let off = 0; off + 4 <= buf.length;) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) throw new Error(`malformed netlink attribute at ${off}`);
    out.push({ type: buf.readUInt16LE(off + 2) & ~NLA_F_NESTED & 0x3fff, value: buf.subarray(off + 4, off + len) });
    off += pad4(len);
  }
  return out;
}

function ipText(family: number, b: Buffer): string {
  if (family === AF_INET) return [...b.subarray(0, 4)].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

function decodePeer(buf: Buffer): PeerStats {
  const p: PeerStats = { publicKey: '', endpoint: null, lastHandshakeAt: null, rxBytes: 0, txBytes: 0, allowedIps: [] };
  for (const a of parseAttrs(buf)) {
    if (a.type === WGPEER_A.PUBLIC_KEY) p.publicKey = a.value.toString('base64');
    else if (a.type === WGPEER_A.ENDPOINT) {
      const family = a.value.readUInt16LE(0);
      const port = a.value.readUInt16BE(2);
      p.endpoint = family === AF_INET ? `${ipText(family, a.value.subarray(4))}:${port}` : `[${ipText(family, a.value.subarray(8))}]:${port}`;
    } else if (a.type === WGPEER_A.LAST_HANDSHAKE_TIME) {
      // struct __kernel_timespec: s64 seconds, s64 nanoseconds
      const sec = Number(a.value.readBigInt64LE(0));
      const nsec = Number(a.value.readBigInt64LE(8));
      p.lastHandshakeAt = sec === 0 && nsec === 0 ? null : sec * 1000 + Math.floor(nsec / 1e6);
    } else if (a.type === WGPEER_A.RX_BYTES) p.rxBytes = Number(a.value.readBigUInt64LE(0));
    else if (a.type === WGPEER_A.TX_BYTES) p.txBytes = Number(a.value.readBigUInt64LE(0));
    else if (a.type === WGPEER_A.ALLOWEDIPS) {
      for (const ipAttr of parseAttrs(a.value)) {
        let family = 0;
        let addr: Buffer = Buffer.alloc(0);
        let mask = 0;
        for (const f of parseAttrs(ipAttr.value)) {
          if (f.type === WGALLOWEDIP_A.FAMILY) family = f.value.readUInt16LE(0);
          else if (f.type === WGALLOWEDIP_A.IPADDR) addr = f.value;
          else if (f.type === WGALLOWEDIP_A.CIDR_MASK) mask = f.value.readUInt8(0);
        }
        p.allowedIps.push(`${ipText(family, addr)}/${mask}`);
      }
    }
  }
  return p;
}

/**
 * Decodes the messages of a GET_DEVICE dump. A device with many peers answers in several
 * messages; a peer cut between two repeats its public key and goes on with more allowed IPs.
 */
export function decodeGet(messages: Buffer[]): DeviceState {
  const state: DeviceState = { listenPort: 0, peers: [] };
  for (const msg of messages) {
    for (const a of parseAttrs(msg)) {
      if (a.type === WGDEVICE_A.LISTEN_PORT) state.listenPort = a.value.readUInt16LE(0);
      else if (a.type === WGDEVICE_A.PEERS) {
        for (const pa of parseAttrs(a.value)) {
          const p = decodePeer(pa.value);
          const last = state.peers.at(-1);
          if (last && last.publicKey === p.publicKey) last.allowedIps.push(...p.allowedIps);
          else state.peers.push(p);
        }
      }
    }
  }
  return state;
}
