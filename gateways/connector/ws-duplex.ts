// A byte stream over the binary frames of a WebSocket, so HTTP/2 (our stream multiplexer,
// with per-stream flow control) can run on the same connection as the JSON control
// messages, which use text frames. Backpressure: a write completes when the frame is handed
// to the socket; when the reader falls behind, the WebSocket stops reading.
import { Duplex } from 'node:stream';
import { WebSocket } from 'ws';

export interface FrameDuplex {
  duplex: Duplex;
  /** Feed one binary frame received on the WebSocket. */
  feed(frame: Buffer): void;
  /** The WebSocket closed. */
  end(): void;
}

export function frameDuplex(ws: WebSocket): FrameDuplex {
  let paused = false;
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      if (ws.readyState !== WebSocket.OPEN) return cb(new Error('websocket closed'));
      ws.send(chunk, { binary: true }, cb);
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
  return {
    duplex,
    feed(frame) {
      if (!duplex.push(frame) && !paused) {
        paused = true;
        ws.pause();
      }
    },
    end() {
      duplex.push(null);
      duplex.destroy();
    },
  };
}
