// Joins two plain TCP sockets in the kernel (native/splice_relay.c: splice(2) through a pipe
// each way, no byte copied into this process), where a JavaScript relay reads every chunk
// into a Buffer and writes it out again. Used where the tunnel relays a raw TCP stream: the
// node between the client and the connector, the connector between the node and the target.
// Where the module is not built (no compiler when the bootstrap ran, not Linux) or a socket
// is not plain TCP (TLS), `spliceSockets` answers undefined and the caller pipes in
// JavaScript as before.
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { pipeline, type Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';

interface SpliceModule {
  /** A new descriptor of the same connection (core/socket-handover.ts). */
  dup(fd: number): number;
  /** Two connected Unix stream sockets (core/socket-handover.ts). */
  socketpair(): [number, number];
  relay(fdA: number, fdB: number, pendingAB: Buffer | null, pendingBA: Buffer | null, done: (errno: number, ab: number, ba: number) => void): unknown;
  destroy(handle: unknown): void;
}

/** Where `npm run native:build` puts the module. */
const BUILT = './native/build/Release/splice_relay.node';

let loaded: { module: SpliceModule } | { error: string } | undefined;

/** The native module, or why it is not there (said once in a node's log). */
export function loadSpliceRelay(): { module: SpliceModule } | { error: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') return (loaded = { error: `splice(2) is a Linux system call (this is ${process.platform})` });
  try {
    loaded = { module: createRequire(import.meta.url)(BUILT) as SpliceModule };
  } catch (err) {
    loaded = { error: `${(err as Error).message.split('\n')[0]} (build it with: npm run native:build)` };
  }
  return loaded;
}

export interface SplicedRelay {
  /** Settles when both directions ended (bytes each way) or either failed (rejects; both sockets closed). */
  done: Promise<{ aToB: number; bToA: number }>;
  /** Ends the relay now, both sockets closed. */
  destroy(): void;
}

type Handle = { fd?: number; readStop?: () => number };

/** The descriptor of a plain, open TCP socket with nothing waiting to be written; else undefined. */
export function plainFd(s: Socket): number | undefined {
  if (s instanceof TLSSocket || s.destroyed || s.writableLength > 0 || s.connecting) return undefined;
  const handle = (s as unknown as { _handle?: Handle })._handle;
  return typeof handle?.fd === 'number' && handle.fd >= 0 && typeof handle.readStop === 'function' ? handle.fd : undefined;
}

/** What Node read from `s` and holds unconsumed (paused sockets buffer what came meanwhile); stops its reading. */
export function takeBuffered(s: Socket): Buffer | null {
  const chunks: Buffer[] = [];
  // No event can run between these reads and readStop: nothing arrives in between.
  for (let c: Buffer | null; (c = s.read() as Buffer | null) !== null; ) chunks.push(c);
  (s as unknown as { _handle: Handle })._handle.readStop!();
  return chunks.length === 0 ? null : Buffer.concat(chunks);
}

/**
 * Relays `a` <-> `b` in the kernel, or answers undefined (not built, not Linux, not plain TCP
 * sockets, a write still queued) and leaves both sockets untouched. On success both Node
 * sockets are destroyed at once (the relay holds its own descriptors of the same
 * connections); what Node had read from either and not handed out goes first (an upgrade's
 * head belongs back in its socket, `unshift`, before this).
 */
export function spliceSockets(a: Socket, b: Socket): SplicedRelay | undefined {
  const native = loadSpliceRelay();
  if (!('module' in native)) return undefined;
  const fdA = plainFd(a);
  const fdB = plainFd(b);
  if (fdA === undefined || fdB === undefined) return undefined;
  const pendingAB = takeBuffered(a);
  const pendingBA = takeBuffered(b);
  let ended = false;
  let handle: unknown;
  const done = new Promise<{ aToB: number; bToA: number }>((resolve, reject) => {
    handle = native.module.relay(fdA, fdB, pendingAB, pendingBA, (errno, aToB, bToA) => {
      ended = true;
      if (errno === 0) resolve({ aToB, bToA });
      else reject(Object.assign(new Error(`splice relay ended: errno ${-errno}`), { errno, aToB, bToA }));
    });
  });
  done.catch(() => {}); // a caller that does not wait for the outcome has not lost an error
  // The relay holds its own descriptors: Node's close only drops these (no FIN, no reset).
  a.destroy();
  b.destroy();
  return {
    done,
    destroy: () => {
      if (!ended) native.module.destroy(handle);
    },
  };
}

/**
 * Relays `a` <-> `b` until both directions end: in the kernel where `spliceSockets` can (two
 * plain TCP sockets), else piped in JavaScript. Both should be paused; says which it did.
 */
export function relayStreams(a: Duplex, b: Duplex): 'splice' | 'copy' {
  if (a instanceof Socket && b instanceof Socket && spliceSockets(a, b)) return 'splice';
  pipeline(a, b, a, () => {});
  a.resume();
  b.resume();
  return 'copy';
}
