// The connector's end of a raw stream (RAW_UPGRADE in protocol/tunnel-framing.ts): a new
// connection to the node whose tunnel asked for it, at the address its direct data connection
// reached, upgraded naming the stream's one-time key.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { RAW_KEY_HEADER, RAW_UPGRADE } from '../protocol/tunnel-framing.ts';

export type RawDial = (key: string) => Promise<{ socket: Socket; head: Buffer }>;

/** Set on a direct data connection's socket: how its streams reach the same node raw. */
export const RAW_DIAL = Symbol('raw dial');

/** A dialler of raw connections to the node at `url` (its DIRECT_PATH). */
export function rawDialer(url: URL, localAddress: string | undefined, timeoutMs = 5000): RawDial {
  return (key) =>
    new Promise((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { agent: false, headers: { connection: 'Upgrade', upgrade: RAW_UPGRADE, [RAW_KEY_HEADER]: key }, timeout: timeoutMs, localAddress });
      req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs}ms`)));
      req.on('error', reject);
      req.on('response', (res) => {
        res.resume();
        reject(new Error(`answered ${res.statusCode}`));
      });
      req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
        socket.setTimeout(0);
        socket.setNoDelay(true);
        resolve({ socket, head });
      });
      req.end();
    });
}

/** The raw dialler of the connection an HTTP/2 stream came on, if it has one. */
export function rawDialOf(session: { socket?: unknown } | undefined): RawDial | undefined {
  try {
    // The session's socket is node's proxy of it: a property read goes to the socket itself.
    const dial = (session?.socket as Record<symbol, unknown> | undefined)?.[RAW_DIAL];
    return typeof dial === 'function' ? (dial as RawDial) : undefined;
  } catch {
    return undefined; // the session lost its socket already
  }
}
