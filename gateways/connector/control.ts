// The connector control channel: WebSocket upgrades on the admin listener at /api/v1/ws.
// A connector authenticates with its token, registers, and from then on this node holds
// its site actor (claimed here: newest connection wins). Messages are validated; anything
// malformed or oversized closes the connection with a coded reason and changes nothing.
import { randomBytes, randomUUID } from 'node:crypto';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { Clock } from '../../core/clock.ts';
import { isClusterError } from '../../core/errors.ts';
import { ioDeadline } from '../../core/io-deadline.ts';
import type { Logger } from '../../core/log.ts';
import type { SiteMsg } from '../../protocol/actor-messages.ts';
import type { Secret } from '../../core/secret.ts';
import { CLOSE, ConnectorMessage, FEATURES_HEADER, MAX_CONTROL_MESSAGE, PROTOCOL_VERSION, ROLE_HEADER, type ControlSession, type NodeMessage, type WireGuardOffer } from '../../protocol/connector.ts';
import { Admission } from './admission.ts';
import { fastParse } from '../../protocol/fast-parse.ts';
import { verifyConnectorToken } from './token.ts';
import type { TunnelControl, TunnelLink } from './tunnel-control.ts';
import { DIRECT_KEY_HEADER, DIRECT_PATH, DIRECT_UPGRADE, frameDuplex, RAW_UPGRADE, MAX_DATA_FRAME, type FrameDuplex } from '../../protocol/tunnel-framing.ts';

export const CONTROL_PATH = '/api/v1/ws';
/** How long connections are kept through a fence for the node to rejoin (it takes well under a second with Valkey in reach). */
const FENCE_KEEP_MS = 10_000;
/** How long a connector that registered with a WireGuard key has to say which data plane it brought up. */
const DATA_PLANE_TIMEOUT_MS = 15_000;

/**
 * The node's TCP connection to the connector's data plane, through the WireGuard device: from
 * the node's tunnel address to the site's. A few tries: the connector reports its data plane
 * after its first handshake, and the node's side of the route may still be settling.
 */
async function dialThroughTunnel(offer: WireGuardOffer): Promise<Socket> {
  let last: Error | undefined;
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const sock = tcpConnect({ host: offer.siteAddress, port: offer.dataPort, localAddress: offer.nodeAddress });
        sock.setTimeout(2000, () => sock.destroy(new Error(`no answer from ${offer.siteAddress}:${offer.dataPort} in 2s`)));
        sock.once('connect', () => {
          sock.setTimeout(0);
          sock.setNoDelay(true);
          resolve(sock);
        });
        sock.once('error', reject);
      });
    } catch (err) {
      last = err as Error;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  }
  throw last!;
}

/** What the control channel needs of the actor host: the site actor of each connection. */
export interface SiteActors {
  /** Claims the site's actor on this node (newest connection wins; `takeFromLive: false`: only if free or its owner dead). */
  claimHere(kind: 'site', id: string, opts?: { takeFromLive?: boolean }): Promise<number>;
  deliverLocal(kind: 'site', id: string, msg: SiteMsg, timeoutMs: number): Promise<unknown>;
  release(kind: 'site', id: string): Promise<void>;
  /** Asks the site's actor wherever it lives (a standby's node asks the primary's). */
  ask(kind: 'site', id: string, msg: SiteMsg, timeoutMs: number): Promise<unknown>;
}

/** Where a node records the standby tunnels it holds (for the routes). */
export interface StandbyRecords {
  set(siteId: string, node: string, session: string): Promise<void>;
  /** `announce: false`: no route can change (the standby's node took the site). */
  clear(siteId: string, node: string, session: string, opts?: { announce?: boolean }): Promise<void>;
}

export interface ControlChannelDeps {
  secret: Secret;
  host: SiteActors;
  tunnels: TunnelControl;
  standbys: StandbyRecords;
  nodeId: string;
  /** This node's admin address as connectors dial it: where a direct data connection reaches this node past a load balancer. */
  endpoint?: string;
  clock: Clock;
  logger: Logger;
  /** False while the node is starting or draining: connectors should go elsewhere. */
  accepting: () => boolean;
  /** True while the node is fenced (its lease lost, rejoining): its site actors are gone for the moment. */
  fenced?: () => boolean;
  /** Bounds the registrations in progress and sheds new ones while the node lags (default: the bound only). */
  admission?: Admission;
  /** A connector that sent nothing for this long is taken for gone (default 30 s; pinged every third of it, at most every 10 s). */
  silentAfterMs?: number;
  registerTimeoutMs?: number;
  /** How long this node took over a registration, a promotion or a standby, from reading the message to the site attached (seconds). */
  onAttached?: (how: 'register' | 'promote' | 'standby', seconds: number) => void;
  /** Of that, the wait for the site's claim (batched with the others of its turn, one batch in flight at a time). */
  onClaimed?: (how: 'register' | 'promote', seconds: number) => void;
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict', 429: 'Too Many Requests', 503: 'Service Unavailable' };

function refuse(socket: Duplex, status: 400 | 401 | 404 | 409 | 429 | 503, code: string) {
  const body = JSON.stringify({ code });
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
}

export class ControlChannel {
  readonly #d: ControlChannelDeps;
  readonly #log: Logger;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 2 * MAX_DATA_FRAME });
  /** Asks one connection's connector to move (see moveAll). */
  readonly #movers = new Map<WebSocket, () => void>();
  /** Connections whose data plane runs over this node's WireGuard device. */
  readonly #overWireGuard = new Set<WebSocket>();
  /** One-time keys of the direct data connections offered in `registered`, by key: who takes the socket. */
  readonly #direct = new Map<string, (socket: Socket) => void>();
  /** One-time keys of raw streams offered inside tunnels (RAW_UPGRADE). */
  /** Registered primary connections: how each attaches to a new site actor after a fence, or is let go. */
  readonly #primaries = new Map<WebSocket, { reattach: () => Promise<void>; release: () => void }>();
  /** Registered primaries whose connectors take `standby-advice`: their site and the node last advised for its standby. */
  readonly #advised = new Map<WebSocket, { siteId: string; node: string | undefined }>();
  /** Set while a fence keeps the connections: they are let go if the node has not rejoined by then. */
  #keepUntil: NodeJS.Timeout | undefined;
  readonly #admission: Admission;

  constructor(deps: ControlChannelDeps) {
    this.#d = deps;
    this.#admission = deps.admission ?? new Admission({ lagMs: () => 0 });
    this.#log = deps.logger.child({ component: 'connector-control' });
  }

  attach(server: Server) {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // The HTTP server let go of this socket: a reset while we answer must not be an uncaught error.
      socket.on('error', () => {});
      const path = (req.url ?? '').split('?')[0];
      if (path === DIRECT_PATH) return this.#acceptDirect(req, socket as Socket, head);
      if (path !== CONTROL_PATH) return refuse(socket, 404, 'CLUSTER_ERR_API_NOT_FOUND');
      const auth = req.headers.authorization;
      const token = auth?.startsWith('Bearer ') ? verifyConnectorToken(this.#d.secret, auth.slice(7), this.#d.clock.now()) : undefined;
      if (!token) return refuse(socket, 401, CLOSE.unauthenticated.reason);
      if (!this.#d.accepting()) return refuse(socket, 503, CLOSE.draining.reason);
      const release = this.#admission.enter(token.siteId, req.headers[ROLE_HEADER] === 'standby' ? 'standby' : 'primary');
      // The site's own share taken (its connector retrying hard, or someone holding its secret): its business, not the node's load.
      if (release === 'site-busy') return refuse(socket, 429, 'CLUSTER_ERR_CONNECTOR_REGISTERING');
      if (typeof release === 'string') return refuse(socket, 503, 'CLUSTER_ERR_NODE_OVERLOADED');
      socket.once('close', release); // an upgrade that fails, or a connection that ends before it registered
      const features = new Set(String(req.headers[FEATURES_HEADER] ?? '').split(',').map((f) => f.trim()));
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#serve(ws, token.siteId, token.generation, release, { advisable: features.has('standby-advice'), rawStreams: features.has('raw-streams') }));
    });
  }

  /**
   * A connector's direct data connection, or one stream's raw connection (DIRECT_PATH): the
   * key it names was offered to one live control session (inside one tunnel stream) and is
   * good once. The connector sends nothing before our 101, so `head` is empty from a
   * well-behaved one; anything else is refused.
   */
  #acceptDirect(req: IncomingMessage, socket: Socket, head: Buffer) {
    const upgrade = req.headers.upgrade?.toLowerCase();
    if ((upgrade !== DIRECT_UPGRADE && upgrade !== RAW_UPGRADE) || head.length > 0) return refuse(socket, 400, CLOSE.badMessage.reason);
    if (upgrade === RAW_UPGRADE) return void (this.#d.tunnels.acceptRaw(req, socket, head) || refuse(socket, 401, CLOSE.unauthenticated.reason));
    const key = req.headers[DIRECT_KEY_HEADER];
    const take = typeof key === 'string' ? this.#direct.get(key) : undefined;
    if (!take) return refuse(socket, 401, CLOSE.unauthenticated.reason);
    this.#direct.delete(key as string);
    take(socket);
  }

  #serve(ws: WebSocket, siteId: string, generation: number, registeredSlot: () => void, { advisable, rawStreams }: { advisable: boolean; rawStreams: boolean }) {
    const log = this.#log.child({ siteId });
    let moving = false;
    const directKey = randomBytes(24).toString('base64url');
    const session: ControlSession = {
      id: randomUUID(),
      // `registered` carries the offer of a direct data connection: only this channel knows its key.
      send: (msg: NodeMessage) => {
        if (msg.type === 'registered') registeredSlot(); // the registration's work is done: its admission slot is free
        if (msg.type === 'registered' && msg.role !== 'standby' && advisable) this.#advised.set(ws, { siteId, node: msg.standby?.node });
        return ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(msg.type === 'registered' && this.#direct.has(directKey) ? { ...msg, direct: { path: DIRECT_PATH, key: directKey, ...(this.#d.endpoint ? { endpoint: this.#d.endpoint } : {}) } } : msg));
      },
      close: (code, reason) => {
        // Superseded while moving: the connector's new tunnel elsewhere is up. This one keeps
        // serving a moment (until every node's routes name the new node), then takes no new
        // streams, finishes the ones in flight and closes.
        if (moving && code === CLOSE.superseded.code) return retire();
        ws.close(code, reason);
      },
    };
    const retire = () => {
      setTimeout(() => {
        const bye = () => ws.close(1000, 'moved');
        this.#d.tunnels.retire(siteId, session.id, bye);
        // Idle pooled streams never finish on their own: a request in flight gets 2 s.
        setTimeout(bye, 2000).unref();
        setTimeout(() => ws.terminate(), 10_000).unref();
      }, 300).unref();
    };
    this.#movers.set(ws, () => {
      // A standby here is simply given up: the connector opens one elsewhere.
      if (!registered || standby) return ws.close(CLOSE.draining.code, CLOSE.draining.reason);
      moving = true;
      session.send({ v: PROTOCOL_VERSION, type: 'move', reason: 'node draining' });
    });
    let registered = false;
    // Binary frames (the data plane) may arrive before the register message is handled:
    // they wait in this stream until the HTTP/2 session reads them.
    const data: FrameDuplex = frameDuplex(ws);
    // After a stall of this node the register message may be waiting unread: an io deadline, not a plain timer.
    const registerTimer = ioDeadline(this.#d.registerTimeoutMs ?? 5000);
    void registerTimer.expired.then(() => !registered && ws.close(CLOSE.badMessage.code, CLOSE.badMessage.reason));
    // The connector's liveness, as this node sees it: any frame from it counts (its WebSocket
    // pings come every second, a standby's every third; our pings are answered by its
    // WebSocket library), and one silent for `silentAfterMs` is gone (its machine vanished with
    // the TCP connection open). Lenient on purpose: the connector leaves a silent node within
    // seconds by itself, while a connector that is only slow (a starved CPU: 5,600 at once in
    // a 10,000-site storm when this was 10 s) loses its streams in flight and comes back to a
    // node that is busy already.
    const silentAfterMs = this.#d.silentAfterMs ?? 30_000;
    const pingEveryMs = Math.min(10_000, silentAfterMs / 3);
    let heardAt = this.#d.clock.now();
    const heard = () => (heardAt = this.#d.clock.now());
    ws.on('ping', heard);
    ws.on('pong', heard);
    let pingedAt = heardAt;
    const ping = this.#d.clock.setInterval(() => {
      const now = this.#d.clock.now();
      // A tick this late means this node stalled: the connector's frames may be waiting unread.
      if (now - pingedAt > 2 * pingEveryMs) heardAt = now;
      pingedAt = now;
      if (ws.readyState === WebSocket.OPEN) ws.ping();
      if (now - heardAt <= silentAfterMs) return;
      // Decided once this turn has read the sockets: a frame waiting there is no silence.
      const last = heardAt;
      setImmediate(() => {
        if (heardAt !== last || ws.readyState !== WebSocket.OPEN) return;
        log.warn({ silentMs: this.#d.clock.now() - heardAt }, 'connector silent; closing its connection');
        ws.terminate();
      });
    }, pingEveryMs);
    ws.on('error', () => {});
    /**
     * The HTTP/2 session to the connector: over this WebSocket's binary frames, over a direct
     * connection of its own, or over WireGuard.
     */
    /** The data plane died alone: the control connection ends too, so the connector registers again. */
    const tunnelLost = () => ws.readyState === WebSocket.OPEN && ws.close(CLOSE.tunnelLost.code, CLOSE.tunnelLost.reason);
    /**
     * The HTTP/2 session to the connector: over this WebSocket's binary frames, over a direct
     * connection of its own, or over WireGuard (made at the tunnel's first stream; a
     * connection of its own is read meanwhile, and its end is the tunnel's loss). False: a
     * standby refused (this node holds the site's primary).
     */
    const openTunnel = (transport: 'websocket' | 'direct' | 'wireguard', connection: Duplex | undefined, asStandby = false): boolean => {
      const link: TunnelLink = connection ? { socket: connection } : { frames: () => data.duplex };
      const opened = this.#d.tunnels.set(siteId, session.id, link, asStandby, (why) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        log.warn({ transport, err: why }, 'tunnel session ended under a live control connection; closing it so the connector registers again');
        tunnelLost();
      }, transport === 'direct' && rawStreams);
      if (!opened) return false;
      // It ends with the control connection, as the frames do.
      if (connection) ws.once('close', () => connection.destroy());
      if (transport === 'wireguard') this.#overWireGuard.add(ws);
      return true;
    };
    /** Set when the connector registered with a WireGuard key: the data plane waits for its choice. */
    let pending: { offer: WireGuardOffer | undefined; timer: NodeJS.Timeout } | undefined;
    /** A standby connection: a tunnel here, the site held elsewhere (until promoted). */
    let standby = false;
    let wsDataPlane = false;
    /** This connection's direct data connection: it ends with the control connection, like the frames do. */
    let directSocket: Socket | undefined;
    this.#direct.set(directKey, (socket) => {
      // Only a WebSocket data plane moves (WireGuard has its own connection already). The key is good once, so this runs once.
      if (ws.readyState !== WebSocket.OPEN || !registered || this.#overWireGuard.has(ws)) return refuse(socket, 409, CLOSE.badMessage.reason);
      socket.setTimeout(0);
      socket.setNoDelay(true);
      // Used once our answer is written: a connection with nothing queued can move to the
      // ingress thread as it is (core/socket-handover.ts), one with a write queued is relayed.
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${DIRECT_UPGRADE}\r\n\r\n`, (err) => {
        if (err || ws.readyState !== WebSocket.OPEN) return void socket.destroy();
        directSocket = socket;
        // Before the data plane is up (the connector may dial as soon as it reads `registered`,
        // while this side still waits on the site actor or a WireGuard choice): used then.
        if (!wsDataPlane) return;
        if (!openTunnel('direct', socket, standby)) {
          socket.destroy();
          return void ws.close(CLOSE.notStandby.code, CLOSE.notStandby.reason); // the site's primary came here meanwhile
        }
        log.info('data plane moved to a direct connection');
      });
    });
    /** The data plane over WebSocket: on its direct connection if that came already, else on the frames until it does. */
    const useWebSocket = (asStandby = false): boolean => {
      wsDataPlane = true;
      return directSocket ? openTunnel('direct', directSocket, asStandby) : openTunnel('websocket', undefined, asStandby);
    };
    /** A registered primary (not over WireGuard: its peer goes with the actor) stays through a fence. */
    const keepAcrossFences = () => {
      if (this.#overWireGuard.has(ws)) return;
      this.#primaries.set(ws, {
        reattach: async () => {
          // Not from a live owner: a connection that came while this node was away (the
          // connector gave this one up, or another took its place) is newer than this one.
          try {
            await this.#d.host.claimHere('site', siteId, { takeFromLive: false });
          } catch (err) {
            if (isClusterError(err, 'CLUSTER_ERR_ACTOR_UNREACHABLE')) ws.close(CLOSE.superseded.code, CLOSE.superseded.reason);
            throw err;
          }
          await this.#d.host.deliverLocal('site', siteId, { type: 'attach', session, generation }, 5000);
        },
        release: () => ws.close(CLOSE.draining.code, CLOSE.draining.reason),
      });
    };
    ws.on('message', async (frame: Buffer, isBinary) => {
      // The HTTP/2 data plane over this WebSocket. Always kept: the connector's first frames
      // can arrive before this side has opened its end (it answers as soon as it has 'registered').
      heard();
      if (isBinary) return data.feed(frame);
      if (frame.length > MAX_CONTROL_MESSAGE) return ws.close(CLOSE.tooLarge.code, CLOSE.tooLarge.reason);
      let msg: ConnectorMessage;
      try {
        msg = fastParse(ConnectorMessage, JSON.parse(frame.toString()));
      } catch {
        log.warn('malformed control message; closing');
        ws.close(CLOSE.badMessage.code, CLOSE.badMessage.reason);
        return;
      }
      const readAt = performance.now();
      const sinceRead = () => (performance.now() - readAt) / 1000;
      const attached = (how: 'register' | 'promote' | 'standby') => this.#d.onAttached?.(how, sinceRead());
      try {
        if (msg.type === 'register' && msg.role === 'standby') {
          if (registered) return;
          registered = true;
          registerTimer.cancel();
          // A second tunnel that does not take the site: the primary's actor vouches for the token.
          const ok = await Promise.race([this.#d.host.ask('site', siteId, { type: 'standby', generation }, 2000), new Promise((r) => setTimeout(() => r(false), 2500))]).catch(() => false);
          if (ok !== true) return ws.close(CLOSE.notStandby.code, CLOSE.notStandby.reason);
          standby = true;
          // The primary registered here meanwhile (the connector lost its primary elsewhere and
          // came here before this standby was through): a standby here is no second path.
          if (!useWebSocket(true)) return ws.close(CLOSE.notStandby.code, CLOSE.notStandby.reason);
          await this.#d.standbys.set(siteId, this.#d.nodeId, session.id);
          session.send({ v: PROTOCOL_VERSION, type: 'registered', siteId, node: this.#d.nodeId, epoch: 0, role: 'standby' });
          attached('standby');
          log.info('connector standing by');
        } else if (msg.type === 'promote') {
          if (!standby) return ws.close(CLOSE.badMessage.code, CLOSE.badMessage.reason);
          // The primary is lost: this connection takes the site, on the tunnel it already has.
          standby = false;
          // No working tunnel left on this connection: registering afresh is quicker than a site routed to nothing.
          if (!this.#d.tunnels.promote(siteId, session.id)) return tunnelLost();
          this.#admission.promoted(); // standbys wait while this node takes promotions
          // Kept through a fence from here on, not from the end: a fence while the claim, the
          // attach or the standby record below was awaited stopped the site actor and left this
          // connection open and unowned, its site routed to nothing for good (302 sites in a
          // 10,000-site storm whose survivor fenced mid-promotion). Rejoining attaches it anew;
          // if this flow fails instead, the connection closes and the connector registers again.
          keepAcrossFences();
          await this.#d.host.claimHere('site', siteId);
          this.#d.onClaimed?.('promote', sinceRead());
          await this.#d.host.deliverLocal('site', siteId, { type: 'attach', session, generation }, 5000);
          attached('promote');
          // Unannounced: no route names a standby on its site's own node, so none changes (each
          // announcement recomputed the site's routes on every node, a storm's worth at once).
          await this.#d.standbys.clear(siteId, this.#d.nodeId, session.id, { announce: false }).catch(() => {});
          log.info('standby connector promoted: this node holds the site');
        } else if (msg.type === 'register') {
          if (registered) return;
          registered = true;
          registerTimer.cancel();
          // From the claim on, routes may name this node: streams wait for the tunnel meanwhile.
          this.#d.tunnels.expect(siteId, session.id);
          await this.#d.host.claimHere('site', siteId);
          this.#d.onClaimed?.('register', sinceRead());
          const wireguardKey = msg.wireguard?.publicKey;
          if (wireguardKey === undefined) {
            useWebSocket();
          }
          // The site actor checks the token's secret generation: a token from before a rotation is refused there.
          const reply = (await this.#d.host.deliverLocal('site', siteId, { type: 'attach', session, generation, wireguardKey }, 5000)) as { wireguard?: WireGuardOffer } | false | undefined;
          attached('register');
          const offer = reply ? reply.wireguard : undefined;
          if (wireguardKey !== undefined && offer) {
            pending = { offer, timer: setTimeout(() => ws.close(CLOSE.badMessage.code, CLOSE.badMessage.reason), DATA_PLANE_TIMEOUT_MS) };
          } else if (wireguardKey !== undefined) {
            // No offer (a websocket site, or refused): the connector can only use this WebSocket.
            useWebSocket();
          }
          if (!pending) keepAcrossFences();
          log.info({ connectorVersion: msg.connectorVersion, wireguardOffered: Boolean(pending?.offer) }, 'connector registered');
        } else if (!registered) {
          ws.close(CLOSE.badMessage.code, CLOSE.badMessage.reason);
        } else if (msg.type === 'data-plane') {
          if (!pending) {
            // Over the WebSocket without an offer: it is up already; the actor learns the transport.
            if (msg.transport === 'websocket' && wsDataPlane) await this.#d.host.deliverLocal('site', siteId, { type: 'data-plane', sessionId: session.id, transport: 'websocket' }, 5000);
            return;
          }
          const { offer, timer } = pending;
          pending = undefined;
          clearTimeout(timer);
          if (msg.transport === 'wireguard') {
            if (!offer) return ws.close(CLOSE.badMessage.code, CLOSE.badMessage.reason);
            directSocket?.destroy();
            openTunnel('wireguard', await dialThroughTunnel(offer));
          } else {
            useWebSocket();
          }
          await this.#d.host.deliverLocal('site', siteId, { type: 'data-plane', sessionId: session.id, transport: msg.transport }, 5000);
          keepAcrossFences();
          log.info({ transport: msg.transport, reason: msg.reason }, 'connector data plane up');
        } else if (msg.type === 'health') {
          // Fenced: no actor to tell; the connector reports its health again when it is attached anew.
          if (this.#d.fenced?.()) return;
          await this.#d.host.deliverLocal('site', siteId, { type: 'health', targets: msg.targets }, 5000);
        } else if (msg.type === 'disconnect') {
          ws.close(1000, 'bye');
        }
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'control message failed; closing so the connector retries');
        ws.close(CLOSE.draining.code, CLOSE.draining.reason);
      }
    });
    ws.on('close', async () => {
      this.#primaries.delete(ws);
      this.#advised.delete(ws);
      this.#direct.delete(directKey);
      directSocket?.destroy();
      this.#movers.delete(ws);
      this.#overWireGuard.delete(ws);
      registerTimer.cancel();
      if (pending) clearTimeout(pending.timer);
      ping.cancel();
      data.end();
      this.#d.tunnels.delete(siteId, session.id);
      if (standby) {
        await this.#d.standbys.clear(siteId, this.#d.nodeId, session.id).catch(() => {});
        log.info('standby connector disconnected');
        return;
      }
      if (!registered) return;
      // Offline only if this was the site's current session (not one a newer one replaced).
      const current = await this.#d.host.deliverLocal('site', siteId, { type: 'detach', sessionId: session.id }, 5000).catch(() => false);
      if (current) await this.#d.host.release('site', siteId).catch((err) => log.warn({ err: (err as Error).message }, 'release failed'));
      log.info({ wasCurrent: Boolean(current) }, 'connector disconnected');
    });
  }

  /**
   * Draining: asks every connector to open a tunnel to another node first; each old
   * connection closes once its site has moved and its streams are done. Resolves when all
   * have closed, or after `timeoutMs` (then close() ends the rest).
   */
  async moveAll(timeoutMs: number): Promise<void> {
    for (const move of this.#movers.values()) move();
    const deadline = this.#d.clock.now() + timeoutMs;
    while (this.#wss.clients.size > 0 && this.#d.clock.now() < deadline) await this.#d.clock.sleep(50);
  }

  /**
   * Tells each primary's connector (one that takes it) the node now advised for its standby,
   * where that changed: after a death or a leave the node advised before is gone, and the
   * connector would try it until its primary moved. Called on a change of members.
   */
  readvise(advice: (siteId: string) => { node: string; endpoint: string } | undefined) {
    for (const [ws, entry] of this.#advised) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      const standby = advice(entry.siteId);
      if (standby?.node === entry.node) continue;
      entry.node = standby?.node;
      ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'standby-advice', ...(standby ? { standby } : {}) } satisfies NodeMessage));
    }
  }

  /**
   * This node fenced itself: its site actors stopped, but their connections stay (the actors
   * leave them open while fenced), to be attached anew when the node rejoins, which normally
   * takes well under a second. If it has not within `withinMs` (Valkey out of reach, say), the
   * connectors are let go, to register with a node that can hold their sites.
   */
  keepThroughFence(withinMs = FENCE_KEEP_MS) {
    clearTimeout(this.#keepUntil);
    this.#keepUntil = setTimeout(() => {
      this.#keepUntil = undefined;
      this.#log.warn({ connections: this.#primaries.size }, 'not rejoined in time after a fence; letting the connectors go');
      for (const p of this.#primaries.values()) p.release();
    }, withinMs);
    this.#keepUntil.unref();
  }

  /** The node rejoined after a fence: every kept connection gets a new site actor here. */
  async reattachAll(): Promise<void> {
    if (!this.#keepUntil) return; // no fence to come back from (the first join)
    clearTimeout(this.#keepUntil);
    this.#keepUntil = undefined;
    const kept = [...this.#primaries.values()];
    const failed = (await Promise.allSettled(kept.map((p) => p.reattach().catch((err) => (p.release(), Promise.reject(err)))))).filter((r) => r.status === 'rejected').length;
    this.#log.warn({ reattached: kept.length - failed, released: failed }, 'rejoined after a fence: connections kept through it attached anew');
  }

  /**
   * The WireGuard device was started anew (wireguard-go died): its sessions with the
   * connectors are gone, so every connector on it registers again and handshakes afresh.
   */
  reconnectWireGuard(): number {
    const n = this.#overWireGuard.size;
    for (const ws of this.#overWireGuard) ws.close(CLOSE.tunnelLost.code, CLOSE.tunnelLost.reason);
    return n;
  }

  close() {
    for (const ws of this.#wss.clients) ws.close(CLOSE.draining.code, CLOSE.draining.reason);
  }
}
