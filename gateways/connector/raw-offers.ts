// The one-time keys of raw streams (RAW_UPGRADE in protocol/tunnel-framing.ts) this node
// has offered and not yet seen used: a key goes to the connector inside its own tunnel's
// CONNECT stream, and the connection that upgrades naming it becomes that stream's bytes.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { RAW_UPGRADE } from '../../protocol/tunnel-framing.ts';
import type { RawOffer } from './tunnels.ts';

/** How long a key waits for its connection (the connector dials at once, after its target answered). */
const KEY_TTL_MS = 10_000;
/** Keys waiting at once, node-wide; past it streams stay on HTTP/2 (each key is a little memory and a timer). */
const MAX_WAITING = 4096;

export class RawOffers {
  readonly #waiting = new Map<string, (socket: Socket, head: Buffer) => void>();

  /** A key for one stream's raw connection, or undefined when too many wait already. */
  offer(): RawOffer | undefined {
    if (this.#waiting.size >= MAX_WAITING) return undefined;
    const key = randomBytes(18).toString('base64url');
    let got: { socket: Socket; head: Buffer } | undefined;
    let claimed = false;
    let done = false;
    let resolve!: (v: { socket: Socket; head: Buffer }) => void;
    let reject!: (err: Error) => void;
    const arrived = new Promise<{ socket: Socket; head: Buffer }>((res, rej) => ([resolve, reject] = [res, rej]));
    arrived.catch(() => {}); // nobody may have asked for it
    const cancel = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.#waiting.delete(key);
      if (!got) reject(new Error('no connection came for the raw stream key'));
      else if (!claimed) got.socket.destroy();
    };
    const timer = setTimeout(cancel, KEY_TTL_MS);
    timer.unref();
    this.#waiting.set(key, (socket, head) => {
      this.#waiting.delete(key);
      got = { socket, head };
      resolve(got);
    });
    return {
      key,
      take: () => {
        claimed = true;
        return arrived;
      },
      cancel,
    };
  }

  /**
   * An upgrade to RAW_UPGRADE naming `key` (its RAW_KEY_HEADER): if the key waits here,
   * answers 101 and hands the connection to its stream; false (nothing written, nothing
   * taken) otherwise, for the caller to refuse.
   */
  accept(key: string, socket: Socket, head: Buffer): boolean {
    const to = this.#waiting.get(key);
    if (!to) return false;
    socket.setTimeout(0);
    socket.setNoDelay(true);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${RAW_UPGRADE}\r\n\r\n`);
    to(socket, head);
    return true;
  }

  /** Keys offered and not yet used or expired (metrics, tests). */
  get waiting(): number {
    return this.#waiting.size;
  }
}
