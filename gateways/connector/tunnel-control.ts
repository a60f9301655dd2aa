// What the connector control channel asks of the tunnels: a site's tunnel comes, is set over
// a connection, is promoted, retired or deleted. Kept apart from the tunnels themselves
// because they may live in another thread: on the node's data-plane worker
// (supervisors/edge-thread.ts, docs/data-plane-worker.md) the control channel stays on the
// main thread and the HTTP/2 sessions are made in the worker. `LocalTunnels` is the same
// thread's version.
import http2 from 'node:http2';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../core/log.ts';
import { RAW_KEY_HEADER, TUNNEL_H2_CONNECTION_WINDOW, TUNNEL_H2_SETTINGS } from '../../protocol/tunnel-framing.ts';
import { RawOffers } from './raw-offers.ts';
import { readAhead, type TunnelRegistry } from './tunnels.ts';

/** What a tunnel's HTTP/2 session is made over: a connection of its own (direct, WireGuard), or the control WebSocket's frames. */
export type TunnelLink = { socket: Duplex } | { frames: () => Duplex };

export interface TunnelControl {
  /** A tunnel for the site is coming on this session: streams wait for it meanwhile. */
  expect(siteId: string, sessionId: string): void;
  /**
   * The site's tunnel, over `link` (TunnelRegistry.set says when a standby is refused: false).
   * `lost` runs if the tunnel dies while still the site's (its connection or session ended):
   * the control connection must close then. `rawStreams`: the connector takes a raw
   * connection per TCP stream.
   */
  set(siteId: string, sessionId: string, link: TunnelLink, standby: boolean, lost: (why: string | undefined) => void, rawStreams: boolean): boolean;
  /** A standby now carries its site; false: no working tunnel of this session here. */
  promote(siteId: string, sessionId: string): boolean;
  delete(siteId: string, sessionId: string): void;
  /** Out of use; `done` once its streams in flight finished. */
  retire(siteId: string, sessionId: string, done: () => void): void;
  /** A connection upgrading to RAW_UPGRADE: taken (answered 101 or refused) or false, left to the caller to refuse. */
  acceptRaw(req: IncomingMessage, socket: Socket, head: Buffer): boolean;
}

/**
 * Puts the site's tunnel over `link` into `tunnels`: the HTTP/2 session is made at its first
 * stream; a connection of its own is read meanwhile (`readAhead`: its end is seen at once)
 * and its close is the tunnel's loss. Shared by `LocalTunnels` and the data-plane worker.
 */
export function setTunnel(tunnels: TunnelRegistry, siteId: string, sessionId: string, link: TunnelLink, standby: boolean, lost: (why: string | undefined) => void, raw: (() => ReturnType<RawOffers['offer']>) | undefined, log: Logger): boolean {
  let failure: string | undefined;
  let release: (() => void) | undefined;
  const socket = 'socket' in link ? link.socket : undefined;
  const opened = tunnels.set(siteId, sessionId, () => {
    release?.();
    const over = socket ?? (link as { frames: () => Duplex }).frames();
    const h2 = http2.connect('http://connector.invalid', { settings: TUNNEL_H2_SETTINGS, createConnection: () => over as never });
    h2.once('connect', () => h2.setLocalWindowSize(TUNNEL_H2_CONNECTION_WINDOW));
    h2.on('error', (err) => {
      failure = err.message;
      log.debug({ siteId, err: err.message }, 'tunnel session error');
    });
    return h2;
  }, standby, () => lost(failure), raw, socket);
  if (!opened) return false;
  if (socket) {
    release = readAhead(socket);
    socket.once('close', () => tunnels.holds(siteId, sessionId) && lost(failure ?? 'its connection closed'));
  }
  return true;
}

/** The tunnels in this thread. */
export class LocalTunnels implements TunnelControl {
  readonly #raw = new RawOffers();

  constructor(readonly registry: TunnelRegistry, readonly log: Logger) {}

  expect(siteId: string, sessionId: string) {
    this.registry.expect(siteId, sessionId);
  }

  set(siteId: string, sessionId: string, link: TunnelLink, standby: boolean, lost: (why: string | undefined) => void, rawStreams: boolean): boolean {
    return setTunnel(this.registry, siteId, sessionId, link, standby, lost, rawStreams ? () => this.#raw.offer() : undefined, this.log);
  }

  promote(siteId: string, sessionId: string) {
    return this.registry.promote(siteId, sessionId);
  }

  delete(siteId: string, sessionId: string) {
    this.registry.delete(siteId, sessionId);
  }

  retire(siteId: string, sessionId: string, done: () => void) {
    this.registry.retire(siteId, sessionId, done);
  }

  acceptRaw(req: IncomingMessage, socket: Socket, head: Buffer): boolean {
    const key = req.headers[RAW_KEY_HEADER];
    return typeof key === 'string' && this.#raw.accept(key, socket, head);
  }
}
