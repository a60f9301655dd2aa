// The tunnels this node holds: site id -> the HTTP/2 session over that site's connector
// connection. The ingress opens one HTTP/2 stream per client connection (CONNECT to a
// target id); the connector checks the target against its configuration and dials it.
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ClusterError } from '../../core/errors.ts';
import { PROTOCOL_HEADER, RAW_HEADER, RAW_KEY_HEADER, TARGET_HEADER } from '../../protocol/tunnel-framing.ts';
import { cancellable } from './stream-cancel.ts';

/** Longest a stream waits for a tunnel that is being set up on this node (a registration in progress). */
const PENDING_WAIT_MS = 3000;

interface Tunnel {
  sessionId: string;
  standby: boolean;
  /** Made by `connect` at the tunnel's first stream: most sites are idle most of the time. */
  h2: http2.ClientHttp2Session | undefined;
  connect: () => http2.ClientHttp2Session;
  /** Called when this tunnel's HTTP/2 session ends while the tunnel is still in use. */
  lost: (() => void) | undefined;
  /** Offers a raw connection for one stream (RAW_UPGRADE); absent where the connector cannot take one. */
  raw: (() => RawOffer | undefined) | undefined;
  /** The connection the session is made over, where it is one of its own: closed with the tunnel if no session was made on it. */
  connection: Duplex | undefined;
}

/** A one-time key for one stream's raw connection, and the socket the connector upgrades with it. */
export interface RawOffer {
  key: string;
  /** The connector's upgraded connection (plain or TLS, as it reached this node), with any bytes read past its request: the caller owns it. */
  take(): Promise<{ socket: Socket; head: Buffer }>;
  /** Done with the key: it is forgotten, and a connection it brought that nobody took is closed. */
  cancel(): void;
}

/** More than an HTTP/2 preface and its settings, sent before any stream was asked for: not a connector. */
const READ_AHEAD_MAX = 64 * 1024;

/**
 * Reads a connection whose HTTP/2 session is not made yet (see `TunnelRegistry.set`), so that
 * its end is seen at once (a socket nobody reads shows a reset only when the next stream is
 * written to it) and the peer's first frames are kept. The function returned stops reading
 * and gives them back for the session about to be made (node's HTTP/2 starts with what its
 * socket has buffered).
 */
export function readAhead(connection: Duplex): () => void {
  const early: Buffer[] = [];
  let size = 0;
  const keep = (chunk: Buffer) => {
    early.push(chunk);
    size += chunk.length;
    if (size > READ_AHEAD_MAX) connection.destroy();
  };
  // A peer that only half-closes has gone as well: no session can be made on what is left.
  const ended = () => connection.destroy();
  connection.on('data', keep);
  connection.once('end', ended);
  return () => {
    connection.pause();
    connection.off('data', keep);
    connection.off('end', ended);
    if (early.length) connection.unshift(Buffer.concat(early));
  };
}

export class TunnelRegistry {
  readonly #sessions = new Map<string, Tunnel>();
  /**
   * Registrations in progress: the site is claimed here (routes may name this node already)
   * while its data plane is still being chosen and brought up (a WireGuard handshake, say).
   * Streams opened meanwhile wait for it instead of failing.
   */
  readonly #pending = new Map<string, { sessionId: string; ready: Promise<void>; resolve: () => void }>();

  /** A tunnel for the site is coming on this session: has() says yes, open() waits for it. */
  expect(siteId: string, sessionId: string) {
    this.#pending.get(siteId)?.resolve();
    let resolve!: () => void;
    const ready = new Promise<void>((r) => (resolve = r));
    this.#pending.set(siteId, { sessionId, ready, resolve });
  }

  #settle(siteId: string, sessionId: string) {
    const p = this.#pending.get(siteId);
    if (p?.sessionId !== sessionId) return;
    this.#pending.delete(siteId);
    p.resolve();
  }

  /**
   * The tunnel of a session: `connect` starts HTTP/2 over its connection when the first stream
   * needs it. An idle site (most of them, and every standby until its primary is lost) costs no
   * session: one is about 19 KB of nghttp2 and socket memory outside V8 (3,000 measured: 57 MB
   * resident), a node holding 3,300 primaries at 10,000 sites. The peer's first frames wait
   * in the connection meanwhile (see `readAhead`). `standby`: a connector's second tunnel here,
   * its site held by another node.
   *
   * `lost` is called if the HTTP/2 session ends while this tunnel is still the site's (its
   * connection reset, a protocol error): the control connection must end too, or the site
   * stays online here with routes naming this node and nothing to carry their streams (seen
   * at 10,000 sites: sites on WebSocket frames unreachable for minutes, never reconnecting).
   *
   * False, and nothing changes, for a standby of a site whose primary tunnel is here (or is
   * being registered here): a standby is a second path through another node, and taking the
   * primary's place would cut the primary's data plane.
   */
  set(siteId: string, sessionId: string, connect: () => http2.ClientHttp2Session, standby = false, lost?: () => void, raw?: () => RawOffer | undefined, connection?: Duplex): boolean {
    const old = this.#sessions.get(siteId);
    if (standby && old && !old.standby && old.sessionId !== sessionId) return false;
    const pending = this.#pending.get(siteId);
    if (standby && pending && pending.sessionId !== sessionId) return false;
    // The same connection's data plane moving (to its direct connection): streams in flight
    // on the old session finish; another connection's session is done with.
    if (old?.sessionId === sessionId) old.h2?.close();
    else old?.h2?.destroy();
    if (old && !old.h2 && old.connection !== connection) old.connection?.destroy();
    this.#sessions.set(siteId, { sessionId, standby, h2: undefined, connect, lost, raw, connection });
    this.#settle(siteId, sessionId);
    return true;
  }

  #h2(siteId: string, t: Tunnel): http2.ClientHttp2Session {
    if (t.h2) return t.h2;
    const h2 = t.connect();
    t.h2 = h2;
    // Replaced, deleted or retired first: those end the session on purpose.
    h2.once('close', () => this.#sessions.get(siteId) === t && t.h2 === h2 && t.lost?.());
    return h2;
  }

  /** Drops the tunnel if it is still this session's. */
  delete(siteId: string, sessionId: string) {
    this.#settle(siteId, sessionId);
    const cur = this.#sessions.get(siteId);
    if (cur?.sessionId !== sessionId) return;
    this.#sessions.delete(siteId);
    if (cur.h2) cur.h2.destroy();
    else cur.connection?.destroy();
  }

  /** This session's tunnel is the site's here. */
  holds(siteId: string, sessionId: string): boolean {
    return this.#sessions.get(siteId)?.sessionId === sessionId;
  }

  /**
   * Takes the tunnel out of use (a connector moving to another node): streams in flight
   * finish, then its session closes and `done` runs; at once if it carried none.
   */
  retire(siteId: string, sessionId: string, done: () => void) {
    const cur = this.#sessions.get(siteId);
    if (cur?.sessionId !== sessionId) return done();
    this.#sessions.delete(siteId);
    if (cur.h2 && !cur.h2.closed) return void cur.h2.close(done);
    cur.connection?.destroy();
    done();
  }

  /** Streams opened through this node's tunnels: on the HTTP/2 session, or on a raw connection each (metrics). */
  readonly opened = { http2: 0, raw: 0 };

  /** Tunnels held here, primary and standby (metrics). */
  counts(): { primary: number; standby: number } {
    let standby = 0;
    for (const s of this.#sessions.values()) if (s.standby) standby++;
    return { primary: this.#sessions.size - standby, standby };
  }

  /** A standby tunnel here now carries its site (the connector promoted it). False: this session holds no working tunnel here any more (a primary of the site took its place). */
  promote(siteId: string, sessionId: string): boolean {
    const s = this.#sessions.get(siteId);
    if (s?.sessionId !== sessionId) return false;
    s.standby = false;
    return !s.h2 || (!s.h2.closed && !s.h2.destroyed);
  }

  has(siteId: string): boolean {
    const s = this.#sessions.get(siteId);
    return Boolean(s && (!s.h2 || (!s.h2.closed && !s.h2.destroyed))) || this.#pending.has(siteId);
  }

  /**
   * Opens a stream to a target through the site's tunnel. Resolves once the connector has
   * connected to the target; rejects with a coded error otherwise. `raw`: a TCP stream that
   * may go on a connection of its own (RAW_UPGRADE) where the tunnel offers one; it resolves
   * to that socket then. A TCP resource's client streams ask for it; HTTP's pooled upstream
   * connections do not (measured slower: HTTP/2 writes many small requests' frames in one
   * system call, a socket per connection one each).
   */
  async open(siteId: string, target: { id: string; host: string; port: number }, protocol: 'tcp' | 'udp', timeoutMs = 5000, raw = false): Promise<Duplex> {
    const pending = this.#pending.get(siteId);
    if (pending) await Promise.race([pending.ready, new Promise((r) => setTimeout(r, Math.min(PENDING_WAIT_MS, timeoutMs)).unref())]);
    return this.#open(siteId, target, protocol, timeoutMs, raw && protocol === 'tcp');
  }

  #open(siteId: string, target: { id: string; host: string; port: number }, protocol: 'tcp' | 'udp', timeoutMs: number, raw: boolean, retried = false): Promise<Duplex> {
    const s = this.#sessions.get(siteId);
    if (!s || s.h2?.closed || s.h2?.destroyed) return Promise.reject(new ClusterError('CLUSTER_ERR_TUNNEL_DOWN', `no tunnel to site ${siteId} on this node`, { siteId }));
    const h2 = this.#h2(siteId, s);
    const offer = raw ? s.raw?.() : undefined;
    return new Promise((resolve, reject) => {
      const stream = h2.request({ ':method': 'CONNECT', ':authority': `${target.host}:${target.port}`, [TARGET_HEADER]: target.id, [PROTOCOL_HEADER]: protocol, ...(offer ? { [RAW_KEY_HEADER]: offer.key } : {}) }, { waitForTrailers: true });
      cancellable(stream); // given up while open, it is cancelled with a trailer, never reset (stream-cancel.ts)
      // One outcome per open: the cancel at the deadline makes the stream emit 'error' too, and
      // a retry started then would fail later with nobody waiting for it (an unhandled
      // rejection ended a node in a 10,000-site storm, while sessions were being replaced).
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        offer?.cancel(); // used or not, the key is good for this stream only
        return true;
      };
      const timer = setTimeout(() => {
        if (!settle()) return;
        stream.destroy();
        reject(new ClusterError('CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT', `target ${target.id} did not answer in ${timeoutMs}ms`, { siteId, targetId: target.id }));
      }, timeoutMs);
      stream.once('response', (headers) => {
        const status = Number(headers[':status']);
        if (status === 200 && offer && headers[RAW_HEADER] === '1') {
          // The connector answered after our 101 on the raw connection: the socket is here
          // already. Its side of the stream has ended; ending ours closes it without a reset,
          // which matters: nghttp2 ends a server session (the connector's) that receives more
          // than 1,000 resets at once or 33 a second after (its "rapid reset" defence), so a
          // reset per raw stream took a busy TCP resource's tunnel down (see stream-cancel.ts).
          stream.end();
          return void offer.take().then(
            ({ socket, head }) => {
              if (!settle()) return socket.destroy();
              if (head.length > 0) socket.unshift(head);
              this.opened.raw++;
              resolve(socket);
            },
            (err: Error) => settle() && reject(new ClusterError('CLUSTER_ERR_TUNNEL_DOWN', `raw stream not connected: ${err.message}`, { siteId })),
          );
        }
        if (!settle()) return;
        if (status === 200) {
          this.opened.http2++;
          return resolve(stream);
        }
        stream.end(); // the connector ended its side with the refusal: no reset (see above)
        reject(new ClusterError('CLUSTER_ERR_TUNNEL_TARGET_REFUSED', `connector answered ${status} for target ${target.id}`, { siteId, targetId: target.id, status }));
      });
      stream.once('error', (err) => {
        if (!settle()) return;
        // Opened on a session that was just replaced (the data plane moving to its direct
        // connection, whose swap closes the old session): the current one is asked once.
        const now = this.#sessions.get(siteId);
        if (!retried && now && now !== s) return resolve(this.#open(siteId, target, protocol, timeoutMs, raw, true));
        reject(new ClusterError('CLUSTER_ERR_TUNNEL_DOWN', `tunnel stream failed: ${err.message}`, { siteId }, { cause: err }));
      });
    });
  }
}
