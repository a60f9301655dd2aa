// wireguard-go's UAPI text protocol (the cross-platform userspace interface): a request is
// `set=1` or `get=1` followed by key=value lines and a blank line; the answer ends with
// `errno=N` and a blank line. Keys on the wire are hex. Pure functions, so the encoding is
// tested without a device.
import { hexToKey, keyToHex } from './keys.ts';
import type { DeviceSettings, DeviceState, PeerConfig, PeerStats } from './device.ts';

function peerLines(p: PeerConfig): string[] {
  const lines = [`public_key=${keyToHex(p.publicKey)}`];
  if (p.endpoint) lines.push(`endpoint=${p.endpoint}`);
  lines.push(`persistent_keepalive_interval=${p.keepaliveSeconds ?? 0}`, 'replace_allowed_ips=true');
  for (const ip of p.allowedIps) lines.push(`allowed_ip=${ip}`);
  return lines;
}

const request = (lines: string[]) => `set=1\n${lines.join('\n')}\n\n`;

export const encodeConfigure = (s: DeviceSettings) =>
  request([`private_key=${keyToHex(s.privateKey)}`, `listen_port=${s.listenPort}`, 'replace_peers=true', ...s.peers.flatMap(peerLines)]);
export const encodeSetPeer = (p: PeerConfig) => request(peerLines(p));
export const encodeRemovePeer = (publicKey: string) => request([`public_key=${keyToHex(publicKey)}`, 'remove=true']);
export const GET_REQUEST = 'get=1\n\n';

/** The errno of a complete answer (ends with a blank line), or undefined while incomplete. */
export function answerErrno(text: string): number | undefined {
  if (!text.endsWith('\n\n')) return undefined;
  const m = /(?:^|\n)errno=(-?\d+)\n\n$/.exec(text);
  if (!m) throw new Error(`malformed UAPI answer: ${JSON.stringify(text.slice(-80))}`);
  return Number(m[1]);
}

/** Decodes a `get=1` answer. */
export function decodeGet(text: string): DeviceState {
  const state: DeviceState = { listenPort: 0, peers: [] };
  let peer: (PeerStats & { sec: number; nsec: number }) | undefined;
  const finish = () => {
    if (!peer) return;
    const { sec, nsec, ...rest } = peer;
    state.peers.push({ ...rest, lastHandshakeAt: sec === 0 && nsec === 0 ? null : sec * 1000 + Math.floor(nsec / 1e6) });
  };
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'public_key') {
      finish();
      peer = { publicKey: hexToKey(value), endpoint: null, lastHandshakeAt: null, rxBytes: 0, txBytes: 0, allowedIps: [], sec: 0, nsec: 0 };
    } else if (key === 'listen_port') state.listenPort = Number(value);
    else if (!peer) continue;
    else if (key === 'endpoint') peer.endpoint = value;
    else if (key === 'last_handshake_time_sec') peer.sec = Number(value);
    else if (key === 'last_handshake_time_nsec') peer.nsec = Number(value);
    else if (key === 'rx_bytes') peer.rxBytes = Number(value);
    else if (key === 'tx_bytes') peer.txBytes = Number(value);
    else if (key === 'allowed_ip') peer.allowedIps.push(value);
  }
  finish();
  return state;
}
