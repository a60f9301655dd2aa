import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * The kernel's ephemeral range: source ports of outgoing connections come from it, so a port
 * picked there (as `listen(0)` does) can be taken by any client socket before our server
 * binds it. We pick below it.
 */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

const bindsTcp = (port: number, host: string) =>
  new Promise<number | undefined>((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, host, () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : undefined));
    });
  });

const bindsUdp = (port: number, host: string) =>
  new Promise<boolean>((resolve) => {
    const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    sock.once('error', () => resolve(false));
    sock.bind(port, host, () => sock.close(() => resolve(true)));
  });

/**
 * A port that was free on `host` a moment ago, for TCP and UDP (DNS uses both). Chosen at
 * random between 10000 and the ephemeral range, so that neither outgoing connections nor a
 * parallel test file picking the same way are likely to take it first; callers that start a
 * server on it still retry when it was taken (`onFreePorts`).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const low = 10_000;
  const high = ephemeralLow();
  for (let attempt = 0; attempt < 50; attempt++) {
    const candidate = high - low > 1000 ? randomInt(low, high) : 0;
    const port = await bindsTcp(candidate, host);
    if (port !== undefined && (await bindsUdp(port, host))) return port;
  }
  throw new Error(`no free port on ${host}`);
}

/**
 * Starts a server on `count` ports picked free. A port can still be taken by someone else
 * before the server binds it; when one of `logFiles` says so (in what this attempt wrote), it
 * tries again with new ports, three times at most. Any other failure is thrown at once.
 */
export async function onFreePorts<T>(count: number, logFiles: string[], start: (ports: number[]) => Promise<T>): Promise<T> {
  const size = (f: string) => (existsSync(f) ? statSync(f).size : 0);
  for (let attempt = 1; ; attempt++) {
    const from = logFiles.map(size);
    const ports: number[] = [];
    while (ports.length < count) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    try {
      return await start(ports);
    } catch (err) {
      const written = logFiles.map((f, i) => (existsSync(f) ? readFileSync(f).subarray(from[i]).toString('utf8') : '')).join('\n');
      if (attempt >= 3 || !/address already in use/i.test(written)) throw err;
    }
  }
}

/** True when something accepts TCP connections at host:port. */
export function isListening(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    import('node:net').then(({ connect }) => {
      const sock = connect({ host, port });
      const done = (ok: boolean) => {
        sock.destroy();
        resolve(ok);
      };
      sock.setTimeout(timeoutMs, () => done(false));
      sock.once('connect', () => done(true));
      sock.once('error', () => done(false));
    });
  });
}

export interface Listen {
  host: string;
  port: number;
  proto: 'tcp' | 'udp';
}

/** The listen addresses of `wanted` that cannot be bound right now (someone else holds them). */
export async function busyAddresses(wanted: Listen[]): Promise<Listen[]> {
  const busy = await Promise.all(wanted.map(async (l) => ((l.proto === 'tcp' ? (await bindsTcp(l.port, l.host)) === l.port : await bindsUdp(l.port, l.host)) ? null : l)));
  return busy.filter((l): l is Listen => l !== null);
}
