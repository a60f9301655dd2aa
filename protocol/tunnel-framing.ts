// A byte stream over the binary frames of a WebSocket, so HTTP/2 (our stream multiplexer,
// with per-stream flow control) can run on the same connection as the JSON control
// messages, which use text frames. Backpressure: a write completes when the frame is handed
// to the socket; when the reader falls behind, the WebSocket stops reading.
// HTTP/2 writes many small pieces (frame headers, then payloads): whatever piled up while
// the socket was busy goes out as one WebSocket frame (writev), one syscall instead of many.
import { Duplex } from 'node:stream';
import { WebSocket } from 'ws';

export interface FrameDuplex {
  duplex: Duplex;
  /** Feed one binary frame received on the WebSocket. */
  feed(frame: Buffer): void;
  /** The WebSocket closed. */
  end(): void;
}

/**
 * Window sizes for the HTTP/2 sessions over a tunnel. The defaults (64 KiB per stream and
 * per connection) cap one bulk stream at a window per round trip; these let a single stream
 * fill the link while flow control still bounds what a slow reader buffers.
 */
export const TUNNEL_H2_SETTINGS = { initialWindowSize: 4 * 1024 * 1024, maxFrameSize: 64 * 1024 } as const;
export const TUNNEL_H2_CONNECTION_WINDOW = 32 * 1024 * 1024;
/** Largest binary frame either side sends (batched writes are cut at this size). */
export const MAX_DATA_FRAME = 512 * 1024;

/**
 * The trailer the node ends a tunnel stream with when it gives the stream up while it is open
 * (gateways/connector/stream-cancel.ts): the connector then resets the stream from its end and
 * closes the target connection. A connector from before this takes it as a half-close.
 */
export const CANCEL_TRAILER = 'x-cluster-cancel';

/**
 * The data plane on a connection of its own (WebSocket transport): after registering, the
 * connector opens a second HTTP connection to the same endpoint and upgrades it at this path
 * to `cluster-tunnel`, naming the one-time key the node gave in `registered`. HTTP/2 then runs
 * on that socket directly: no WebSocket framing and no stream wrapper in between on either
 * end (measured: bulk throughput 1.6x, see README). The binary frames of the control
 * WebSocket stay the fallback when the upgrade is refused (a proxy that passes only
 * WebSocket upgrades, a node from before this existed).
 */
export const DIRECT_PATH = '/api/v1/tunnel';
export const DIRECT_UPGRADE = 'cluster-tunnel';
export const DIRECT_KEY_HEADER = 'x-cluster-tunnel-key';

/**
 * A raw stream: one TCP stream of a TCP resource on a connection of its own, so that both
 * relays (node, connector) join plain sockets and can move the bytes in the kernel
 * (core/splice-relay.ts) instead of framing them in HTTP/2 (measured: bulk through the tunnel
 * 0.3 of direct loopback on HTTP/2, see README). The node opens the CONNECT stream as usual,
 * with a one-time key in RAW_KEY_HEADER; the connector, once its target answered, upgrades a
 * new connection at DIRECT_PATH to RAW_UPGRADE naming that key and, after the node's 101,
 * answers the CONNECT 200 with RAW_HEADER `1` and ends it: the stream's bytes then go on the
 * raw connection. A connector that cannot reach the node answers without RAW_HEADER and the
 * bytes stay on the HTTP/2 stream. Offered only on a direct data connection (the connector
 * reached this node's own address) to a connector that named `raw-streams` in its features.
 */
export const RAW_UPGRADE = 'cluster-raw-stream';
export const RAW_KEY_HEADER = 'x-cluster-raw-key';
export const RAW_HEADER = 'x-cluster-raw';

/** Headers of a tunnel stream's CONNECT request: which configured target, over which protocol. */
export const TARGET_HEADER = 'x-cluster-target';
export const PROTOCOL_HEADER = 'x-cluster-protocol';

/**
 * The stream is made when first asked for: a node's data plane usually moves to its direct
 * connection before any stream, and a Duplex per idle connection is memory for nothing (a
 * node holds thousands). Frames fed before then wait in a list, read by the stream once made.
 */
export function frameDuplex(ws: WebSocket): FrameDuplex {
  const highWaterMark = 256 * 1024;
  let paused = false;
  let ended = false;
  let early: Buffer[] = [];
  let earlyBytes = 0;
  let made: Duplex | undefined;
  const pause = () => {
    if (paused) return;
    paused = true;
    ws.pause();
  };
  const send = (chunk: Buffer, cb: (err?: Error | null) => void) => {
    if (ws.readyState !== WebSocket.OPEN) return cb(new Error('websocket closed'));
    ws.send(chunk, { binary: true }, cb);
  };
  const make = () => {
    const duplex = new Duplex({
      highWaterMark,
      write(chunk: Buffer, _enc, cb) {
        send(chunk, cb);
      },
      writev(chunks, cb) {
        const all = chunks.length === 1 ? (chunks[0]!.chunk as Buffer) : Buffer.concat(chunks.map((c) => c.chunk as Buffer));
        for (let off = 0; off < all.length; off += MAX_DATA_FRAME) {
          const last = off + MAX_DATA_FRAME >= all.length;
          send(all.subarray(off, off + MAX_DATA_FRAME), last ? cb : () => {});
        }
      },
      read() {
        if (paused) {
          paused = false;
          ws.resume();
        }
      },
      final(cb) {
        cb();
      },
    });
    for (const frame of early) duplex.push(frame);
    early = [];
    if (ended) {
      duplex.push(null);
      duplex.destroy();
    }
    return duplex;
  };
  return {
    get duplex() {
      return (made ??= make());
    },
    feed(frame) {
      if (made) {
        if (!made.push(frame)) pause();
        return;
      }
      early.push(frame);
      earlyBytes += frame.length;
      if (earlyBytes > highWaterMark) pause();
    },
    end() {
      ended = true;
      early = [];
      if (!made) return;
      made.push(null);
      made.destroy();
    },
  };
}
