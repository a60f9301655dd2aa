// A TCP connection moved from one thread to another. Node cannot transfer a socket to a
// worker thread, so the giving thread duplicates its descriptor (core/native: dup), takes what
// Node had read and not handed out, and destroys its own socket (a close of its descriptor
// only: no FIN, no reset, the connection lives on in the copy); the receiving thread wraps the
// copy in a new socket and puts those bytes back in front. The first step of the data plane
// in a worker thread (docs/data-plane-worker.md); the splice relay gives its descriptors to the
// kernel the same way.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { loadSpliceRelay, plainFd, takeBuffered } from './splice-relay.ts';

/** A connection on its way to another thread: post it as is (both fields are cloneable). */
export interface HandedSocket {
  fd: number;
  /** Bytes the giving thread had read and not handed out: they come before anything else. */
  head: Uint8Array;
}

/**
 * Takes `socket`'s connection out of this thread: its descriptor's copy and the bytes read
 * ahead, `socket` destroyed ('close' runs on it: a caller removes the listeners that would take
 * that for the connection's end first). Undefined, `socket` untouched, where it cannot be
 * moved: the native module not built, not a plain TCP socket (TLS), a write still queued, or
 * the copy refused (descriptors exhausted).
 */
export function handOver(socket: Socket): HandedSocket | undefined {
  const native = loadSpliceRelay();
  if (!('module' in native)) return undefined;
  const fd = plainFd(socket);
  if (fd === undefined) return undefined;
  let copy: number;
  try {
    copy = native.module.dup(fd);
  } catch {
    return undefined;
  }
  // Read and stopped in the same turn as the copy: no byte can be read here after it.
  const head = takeBuffered(socket) ?? Buffer.alloc(0);
  socket.destroy();
  return { fd: copy, head };
}

/** The connection `handOver` gave, as a socket of this thread, reading from the bytes read ahead on. */
export function adopt(handed: HandedSocket, opts: { allowHalfOpen?: boolean } = {}): Socket {
  const socket = new Socket({ fd: handed.fd, readable: true, writable: true, allowHalfOpen: opts.allowHalfOpen ?? false });
  if (handed.head.byteLength > 0) socket.unshift(Buffer.from(handed.head.buffer, handed.head.byteOffset, handed.head.byteLength));
  return socket;
}

/**
 * A byte stream to another thread: this thread's end as a socket, and the other end to post
 * (`adopt` it there). Both ends pass half-closes on (`allowHalfOpen`), as a TCP connection
 * does. Undefined where the native module is not built.
 */
export function socketPair(): { here: Socket; there: HandedSocket } | undefined {
  const native = loadSpliceRelay();
  if (!('module' in native)) return undefined;
  let fds: [number, number];
  try {
    fds = native.module.socketpair();
  } catch {
    return undefined;
  }
  return { here: adopt({ fd: fds[0], head: new Uint8Array(0) }, { allowHalfOpen: true }), there: { fd: fds[1], head: new Uint8Array(0) } };
}

/**
 * Any connection, moved to another thread: handed over where it can be (a plain TCP socket),
 * else relayed through a socket pair by this thread (a TLS socket, a WebSocket's stream; the
 * slow path: every byte crosses this thread). Undefined where the native module is not built.
 */
export function moveOrRelay(connection: Duplex): HandedSocket | undefined {
  if (connection instanceof Socket) {
    const handed = handOver(connection);
    if (handed) return handed;
  }
  const pair = socketPair();
  if (!pair) return undefined;
  relay(connection, pair.here);
  return pair.there;
}

/** Bytes both ways between `a` and `b`, ends passed on; either closing or failing ends both. */
export function relay(a: Duplex, b: Duplex) {
  a.pipe(b);
  b.pipe(a);
  const done = () => {
    a.destroy();
    b.destroy();
  };
  a.once('close', done).on('error', done);
  b.once('close', done).on('error', done);
}
