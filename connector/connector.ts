// The site connector: dials out to the cluster, so nothing on the site is exposed. It
// exchanges its site id and secret for a token, holds the control WebSocket, answers pings,
// keeps the targets the cluster configured for its site, and reconnects with jittered
// exponential backoff (first retry within 250 ms), rotating through the endpoints it knows.
// A node that goes silent (frozen, partitioned: TCP stays open, nothing arrives) is noticed
// by the connector's own WebSocket pings and left for another endpoint.
// Transports: the node's streams come over the control WebSocket's binary frames, or, for a
// site configured for WireGuard, over this connector's own WireGuard interface (`auto`, the
// default, takes WireGuard when the interface can be made and the node's handshake answers in
// time, else websocket, and says which and why). Over websocket, the node offers the data
// plane a connection of its own (an HTTP upgrade to the same endpoint): taken when it can be,
// the binary frames stay in use when it cannot.
import { EventEmitter } from 'node:events';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { systemClock, type Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import { DIRECT_KEY_HEADER, DIRECT_UPGRADE, frameDuplex, type FrameDuplex } from '../protocol/tunnel-framing.ts';
import { createDataPlaneServer } from './data-plane.ts';
import { RAW_DIAL, rawDialer } from './raw-dial.ts';
import { ConnectorWireGuard, defaultInterfaceName } from './wireguard.ts';
import { HealthChecker } from './health.ts';
import { Liveness } from './liveness.ts';
import { fastParse } from '../protocol/fast-parse.ts';
import { CLOSE, FEATURES_HEADER, NodeMessage, PROTOCOL_VERSION, ROLE_HEADER, type ConnectorMessage, type ConnectorTarget, type WireGuardOffer } from '../protocol/connector.ts';

/** Later rounds of an unanswered direct data connection (1, 2, 4 s apart, jittered). */
const DIRECT_RETRIES = 3;
/** A new standby after fresh advice (its node gone) opens within this, spread from a fifth of it. */
const STANDBY_READVISED_MS = 5000;
/** The longest pause between standby attempts that failed. */
const STANDBY_RETRY_CAP_MS = 15_000;

export interface ConnectorOptions {
  /** Base URLs of nodes or of the load balancer, e.g. https://cluster.example.com */
  endpoints: string[];
  siteId: string;
  secret: string;
  logger: Logger;
  version?: string;
  /** WebSocket ping interval; the node is given up after `silentAfterMs` without a pong (a standby: at a third of the pace, after three times the silence). @default 1000 */
  pingEveryMs?: number;
  /** @default 3000 */
  silentAfterMs?: number;
  /** Time source for token expiry, liveness and backoff. @default the system clock */
  clock?: Clock;
  /** @default "auto" */
  transport?: TransportChoice;
  /** Take the node's offer of a direct data connection (else the WebSocket's binary frames carry the data plane). @default true */
  direct?: boolean;
  /**
   * Give each stream of a TCP resource a connection of its own to the node when it asks
   * (RAW_UPGRADE in protocol/tunnel-framing.ts; only over a direct data connection): both
   * relays then join plain sockets, in the kernel where core/splice-relay.ts is built. @default true
   */
  rawStreams?: boolean;
  /** WireGuard interface name, unique on the machine. @default wgc + random hex */
  interfaceName?: string;
  /** How long `auto` waits for the node's WireGuard handshake before using websocket. @default 3000 */
  handshakeTimeoutMs?: number;
  /**
   * Hold a standby tunnel to a second node (the one the cluster advises): traffic moves to it
   * at once when the primary's node dies or stops answering, and it is promoted when the
   * primary connection is lost. @default true
   */
  standby?: boolean;
  /** Source address of every connection to the cluster (a machine with several; the OS picks when unset). */
  localAddress?: string;
}

export type TransportChoice = 'auto' | 'wireguard' | 'websocket';
export const isTransportChoice = (v: string): v is TransportChoice => v === 'auto' || v === 'wireguard' || v === 'websocket';

export type ConnectorState = 'connecting' | 'connected' | 'backoff' | 'stopped';

export class Connector extends EventEmitter {
  readonly #o: ConnectorOptions;
  readonly #log: Logger;
  #state: ConnectorState = 'connecting';
  #ws: WebSocket | undefined;
  #attempt = 0;
  #next = 0;
  readonly #clock: Clock;
  #timer: { cancel(): void } | undefined;
  /** The cluster signs tokens with its own key: one is good at every node and endpoint, so a reconnect to another node needs none. */
  #token: { value: string; expiresAt: number } | undefined;
  /** An endpoint that went silent is skipped for a while (if there is another). */
  #avoid: { endpoint: string; until: number } | undefined;
  /** Every open control connection: the current one, and one a draining node is retiring. */
  readonly #sockets = new Set<WebSocket>();
  readonly #dataServer;
  readonly #health = new HealthChecker((changes) => this.reportHealth(changes));
  /** Per connection: sets up the data plane from the register reply; false ends the connection. */
  readonly #registering = new Map<WebSocket, (offer: WireGuardOffer | { refused: { code: string; message: string } } | undefined) => Promise<boolean>>();
  /** Targets the cluster allows this connector to reach; nothing else is ever dialled. */
  targets: ConnectorTarget[] = [];
  node: string | undefined;
  /** The data plane of the current connection. */
  transport: 'websocket' | 'wireguard' | undefined;
  /** Control connections whose data plane moved to a direct connection. */
  readonly #direct = new WeakSet<WebSocket>();
  /** Over websocket: whether the current connection's data plane runs on its direct connection or on the WebSocket's frames. */
  get websocketData(): 'frames' | 'direct' | undefined {
    if (this.transport !== 'websocket' || !this.#ws) return undefined;
    return this.#direct.has(this.#ws) ? 'direct' : 'frames';
  }
  /** The standby connection, and the node the cluster advised for it. */
  #standby: { ws: WebSocket | undefined; ready: boolean; node?: string } | undefined;
  #advice: { node: string; endpoint: string } | undefined;
  /** Standby attempts that failed in a row (the retry backs off: the advised address may be unreachable from here). */
  #standbyFailures = 0;
  /** The node holding the standby tunnel (once it stands by). */
  get standbyNode(): string | undefined {
    return this.#standby?.ready ? this.#standby.node : undefined;
  }
  /** The WireGuard interface, once made (auto, wireguard); undefined where it cannot be. */
  #wireguard: Promise<ConnectorWireGuard | undefined> | undefined;

  constructor(o: ConnectorOptions) {
    super();
    this.#clock = o.clock ?? systemClock;
    if (o.endpoints.length === 0) throw new Error('connector needs at least one endpoint');
    this.#o = o;
    this.#log = o.logger.child({ component: 'connector', siteId: o.siteId });
    this.#dataServer = createDataPlaneServer(() => this.targets, this.#log);
  }

  get state(): ConnectorState {
    return this.#state;
  }

  #isStopped(): boolean {
    return this.#state === 'stopped';
  }

  start() {
    const choice = this.#o.transport ?? 'auto';
    if (choice !== 'websocket') {
      this.#wireguard = ConnectorWireGuard.prepare({ name: this.#o.interfaceName ?? defaultInterfaceName(), data: this.#dataServer, logger: this.#log }).catch((err) => {
        const reason = (err as Error).message;
        if (choice === 'wireguard') {
          this.#log.error({ reason }, 'transport wireguard: this machine cannot bring up a WireGuard interface; stopping');
          this.emit('fatal', new Error(`cannot bring up a WireGuard interface: ${reason}`));
          void this.stop();
        } else {
          this.#log.warn({ reason }, 'transport auto: this machine cannot bring up a WireGuard interface; using websocket');
        }
        return undefined;
      });
    }
    void this.#connect();
  }

  async #fetchToken(endpoint: string): Promise<string> {
    if (this.#token && this.#token.expiresAt - this.#clock.now() > 60_000) return this.#token.value;
    const { status, body } = await postJson(new URL('/api/v1/connector/token', endpoint), { siteId: this.#o.siteId, secret: this.#o.secret }, this.#o.localAddress);
    const reply = (body ?? {}) as { token?: string; expiresAt?: number; code?: string };
    if (status !== 200 || !reply.token) throw Object.assign(new Error(`token refused: HTTP ${status} ${reply.code ?? ''}`), { status, code: reply.code });
    this.#token = { value: reply.token, expiresAt: reply.expiresAt ?? this.#clock.now() };
    return reply.token;
  }

  /**
   * The pause before another standby attempt after one that never stood by: growing, so a
   * connector that cannot reach the nodes' admin ports directly does not hammer them, but
   * capped at 15 s, so a standby whose node was only restarting is back soon after it.
   */
  #standbyPause(): number {
    // Jittered: the standbys a busy node deferred (gateways/connector/admission.ts) come back spread out.
    return Math.min(STANDBY_RETRY_CAP_MS, 2000 * 2 ** this.#standbyFailures++) * (0.5 + Math.random() / 2);
  }

  /** Opens a standby connection to the advised node, if one is wanted and none is open. */
  #ensureStandby() {
    const advice = this.#advice;
    // A WireGuard site re-registers over WireGuard instead (its standby would be a WebSocket).
    if (this.#o.standby === false || this.transport === 'wireguard' || this.#isStopped() || this.#standby || this.#state !== 'connected' || !advice || advice.node === this.node) return;
    void this.#connect('standby', advice.endpoint);
  }

  /** The primary connection is gone: the standby takes the site, if it stands by. */
  #promote(): boolean {
    const s = this.#standby;
    if (!s?.ready || !s.ws || s.ws.readyState !== WebSocket.OPEN) return false;
    this.#standby = undefined;
    this.#ws = s.ws;
    this.#state = 'connecting';
    this.#log.warn({ standbyNode: s.node }, 'primary tunnel lost; promoting the standby');
    s.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'promote' } satisfies ConnectorMessage));
    return true;
  }

  async #connect(role: 'primary' | 'standby' = 'primary', standbyEndpoint?: string) {
    if (this.#state === 'stopped') return;
    if (role === 'primary') this.#state = 'connecting';
    let endpoint = standbyEndpoint ?? this.#o.endpoints[this.#next++ % this.#o.endpoints.length]!;
    if (role === 'primary' && this.#avoid && this.#avoid.endpoint === endpoint && this.#avoid.until > this.#clock.now() && this.#o.endpoints.length > 1) {
      endpoint = this.#o.endpoints[this.#next++ % this.#o.endpoints.length]!;
    }
    if (role === 'standby') this.#standby = { ws: undefined, ready: false }; // one standby at a time: this one is on its way
    let token: string;
    try {
      token = await this.#fetchToken(endpoint);
    } catch (err) {
      this.#log.warn({ endpoint, role, err: (err as Error).message }, 'could not get a token');
      if (role === 'standby') {
        this.#standby = undefined;
        this.#clock.setTimeout(() => this.#ensureStandby(), this.#standbyPause());
        return;
      }
      this.emit('refused', err);
      return this.#retry();
    }
    // A standby tunnel is always over its WebSocket (it is the second path, kept simple).
    const wireguard = role === 'primary' ? await this.#wireguard : undefined;
    if (this.#isStopped()) return; // stop() came while we waited for the token
    const url = new URL('/api/v1/ws', endpoint);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    // A zero masking key (RFC 6455 still frames it as masked): masking protects intermediaries
    // from scripts in browsers choosing the bytes; the connector is not a browser, production
    // endpoints are TLS, and XOR-ing every tunnelled byte cost bulk throughput (measured
    // 689 -> 1101 Mbit/s through the tunnel with the zero key).
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}`, [FEATURES_HEADER]: this.#o.rawStreams === false ? 'standby-advice' : 'standby-advice,raw-streams', ...(role === 'standby' ? { [ROLE_HEADER]: 'standby' } : {}) }, handshakeTimeout: 5000, localAddress: this.#o.localAddress, maxPayload: 4 * 1024 * 1024, generateMask: (mask) => void mask.fill(0) });
    if (role === 'primary') this.#ws = ws;
    else this.#standby = { ws, ready: false };
    this.#sockets.add(ws);
    let data: FrameDuplex | undefined;
    const liveness = new Liveness(this.#clock.now(), role === 'primary', this.#o.silentAfterMs ?? 3000, this.#o.pingEveryMs ?? 1000);
    let livenessTimer: { cancel(): void } | undefined;
    ws.on('pong', () => liveness.heard(this.#clock.now()));
    ws.on('open', () => {
      if (this.#state === 'stopped') return ws.close(1000, 'bye');
      liveness.heard(this.#clock.now());
      livenessTimer = this.#clock.setInterval(() => {
        const primary = ws === this.#ws;
        const step = liveness.tick(this.#clock.now(), primary);
        if (step === 'ping') ws.ping();
        if (step !== 'silent') return;
        this.#log.warn({ endpoint, node: this.node, role: primary ? 'primary' : 'standby', silentMs: liveness.silentFor(this.#clock.now()) }, 'node went silent; connecting elsewhere');
        if (primary) this.#avoid = { endpoint, until: this.#clock.now() + 30_000 };
        ws.terminate();
      }, this.#o.pingEveryMs ?? 1000);
      // Binary frames wait in this stream until a data plane reads them.
      data = frameDuplex(ws);
      if (role === 'standby') {
        ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'register', connectorVersion: this.#o.version ?? '0.1.0', transports: ['websocket'], role: 'standby' } satisfies ConnectorMessage));
        this.#dataServer.emit('connection', data.duplex);
        return;
      }
      if (wireguard) {
        // The data plane waits for the node's answer: WireGuard if it offers it and the
        // handshake works, else this WebSocket (the registering step below).
        this.#send({ v: PROTOCOL_VERSION, type: 'register', connectorVersion: this.#o.version ?? '0.1.0', transports: ['wireguard', 'websocket'], wireguard: { publicKey: wireguard.publicKey } });
        return;
      }
      // The node opens HTTP/2 streams to us over this connection's binary frames; its
      // preface may arrive before the 'registered' reply, so the data plane starts now.
      this.#send({ v: PROTOCOL_VERSION, type: 'register', connectorVersion: this.#o.version ?? '0.1.0', transports: ['websocket'] });
      this.transport = 'websocket';
      this.#dataServer.emit('connection', data.duplex);
    });
    /** Over the WebSocket after all (a WireGuard-capable registration that ended up there). */
    const websocketDataPlane = (reason: string) => {
      ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'data-plane', transport: 'websocket', reason } satisfies ConnectorMessage));
      this.#dataServer.emit('connection', data!.duplex);
      this.transport = 'websocket';
    };
    /** The WireGuard offer this connection uses, released when it closes. */
    let wgOffer: WireGuardOffer | undefined;
    this.#registering.set(ws, async (offer) => {
      if (!wireguard) return true;
      const choice = this.#o.transport ?? 'auto';
      if (offer === undefined) {
        this.#log.info('the site is configured for the websocket transport; using websocket');
        websocketDataPlane('the site is configured for websocket');
        return true;
      }
      if ('refused' in offer) {
        this.#log.warn({ code: offer.refused.code, reason: offer.refused.message }, `the node refused WireGuard (${offer.refused.code})`);
        if (choice === 'wireguard') return false;
        websocketDataPlane(`refused: ${offer.refused.code}`);
        return true;
      }
      const timeoutMs = this.#o.handshakeTimeoutMs ?? 3000;
      const ok = await wireguard.connect(offer, timeoutMs).catch((err) => {
        this.#log.warn({ err: (err as Error).message }, 'could not set up the WireGuard peer');
        return false;
      });
      if (ws.readyState !== WebSocket.OPEN) return false;
      wgOffer = offer;
      if (ok) {
        ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'data-plane', transport: 'wireguard' } satisfies ConnectorMessage));
        this.transport = 'wireguard';
        this.#log.info({ node: this.node, endpoint: offer.endpoint, siteAddress: offer.siteAddress }, 'transport: wireguard (handshake with the node completed)');
        return true;
      }
      if (choice === 'wireguard') {
        this.#log.error({ endpoint: offer.endpoint, timeoutMs }, 'transport wireguard: no handshake with the node; trying again');
        return false;
      }
      this.#log.warn({ endpoint: offer.endpoint, timeoutMs }, `transport auto: no WireGuard handshake with ${offer.endpoint} within ${timeoutMs}ms (UDP blocked?); using websocket`);
      websocketDataPlane(`no WireGuard handshake within ${timeoutMs}ms`);
      return true;
    });
    ws.on('message', (frame: Buffer, isBinary) => {
      liveness.heard(this.#clock.now());
      if (isBinary) data?.feed(frame);
      else this.#onMessage(frame.toString(), ws, endpoint);
    });
    ws.on('unexpected-response', (_req, res) => {
      if (res.statusCode === 401) this.#token = undefined; // expired or revoked: get a new one
      ws.terminate();
    });
    ws.on('error', (err) => this.#log.debug({ err: err.message }, 'control connection error'));
    ws.on('close', (code, reason) => {
      livenessTimer?.cancel();
      this.#registering.delete(ws);
      if (this.#standby?.ws === ws) {
        // A dead standby is replaced at once; one that never stood by (refused, unreachable) after a growing pause.
        const wasReady = this.#standby.ready;
        this.#standby = undefined;
        data?.end();
        this.#sockets.delete(ws);
        this.#log.info({ code, reason: reason.toString() }, 'standby tunnel closed');
        this.#clock.setTimeout(() => this.#ensureStandby(), wasReady ? 250 : this.#standbyPause());
        return;
      }
      if (wgOffer) void wireguard?.release(wgOffer).catch((err) => this.#log.debug({ err: (err as Error).message }, 'could not remove a WireGuard peer'));
      this.#sockets.delete(ws);
      data?.end();
      if (this.#ws !== ws) return; // a connection we moved away from: the new one is current
      this.#ws = undefined;
      const wasConnected = this.#state === 'connected';
      this.emit('disconnected', { code, reason: reason.toString() });
      if (wasConnected) this.#log.warn({ code, reason: reason.toString(), node: this.node }, 'control connection closed; reconnecting');
      if (code === CLOSE.unauthenticated.code) this.#token = undefined;
      // Lost (a dead or silent node, a drain, a broken data plane): the standby takes over. Not
      // when the cluster ended it on purpose: replaced by a newer connection of this site,
      // refused, or told to register again for another transport.
      const deliberate = [CLOSE.unauthenticated.code, CLOSE.superseded.code, CLOSE.badMessage.code, CLOSE.transportChanged.code].includes(code as never);
      if (!deliberate && this.#promote()) return;
      this.#retry();
    });
  }

  #onMessage(text: string, ws: WebSocket, endpoint: string) {
    // After stop(), messages still arriving during the close handshake are not acted on: a
    // late config would restart the health-check timers and keep a stopped connector alive.
    if (this.#isStopped()) return;
    let msg: NodeMessage;
    try {
      msg = fastParse(NodeMessage, JSON.parse(text));
    } catch {
      this.#log.warn('malformed message from the cluster; reconnecting');
      this.#ws?.close(CLOSE.badMessage.code, CLOSE.badMessage.reason);
      return;
    }
    switch (msg.type) {
      case 'registered': {
        if (this.#standby && ws === this.#standby.ws && msg.role === 'standby') {
          this.#standby.ready = true;
          this.#standby.node = msg.node;
          this.#standbyFailures = 0;
          this.#log.info({ standbyNode: msg.node, node: this.node }, 'standby tunnel up');
          this.emit('standby', { node: msg.node });
          if (msg.direct) this.#openDirect(ws, endpoint, msg.direct);
          break;
        }
        if (ws !== this.#ws) break;
        this.node = msg.node;
        this.#advice = msg.standby;
        // The primary landed where the standby is: that one is no second path any more.
        if (this.#standby?.ws && this.#standby.node === msg.node) this.#standby.ws.close(1000, 'now the primary is on this node');
        const node = msg.node;
        // The data plane is chosen once per connection: a node attaching this connection anew
        // (after it fenced and rejoined) says 'registered' again, and the data plane is up.
        const choose = this.#registering.get(ws);
        this.#registering.delete(ws);
        void (choose?.(msg.wireguard) ?? Promise.resolve(true)).then((ok) => {
          if (ws !== this.#ws || ws.readyState !== WebSocket.OPEN) return;
          if (!ok) return ws.close(1000, 'wireguard unavailable');
          this.#state = 'connected';
          this.#attempt = 0;
          this.#standbyFailures = 0; // fresh advice: the next standby attempt starts from a short pause
          this.#log.info({ node, epoch: msg.epoch, transport: this.transport }, 'connected');
          this.emit('connected', { node, transport: this.transport });
          if (this.transport === 'websocket' && msg.direct) this.#openDirect(ws, endpoint, msg.direct);
          if (this.#health.snapshot().length) this.reportHealth(this.#health.snapshot());
          this.#ensureStandby();
        });
        break;
      }
      case 'config':
        this.targets = msg.targets;
        this.#health.configure(msg.targets);
        this.emit('config', msg.targets);
        break;
      case 'ping':
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'pong', at: msg.at } satisfies ConnectorMessage));
        break;
      case 'standby-advice':
        // The node advised before died or left: the next standby goes to the one advised now.
        // A standby up elsewhere stays. Spread (every site whose standby was there hears it at
        // once), and only then: a node absorbing a death defers standbys anyway.
        if (ws !== this.#ws) break;
        this.#advice = msg.standby;
        if (this.#standby?.ready) break;
        this.#standbyFailures = 0;
        this.#clock.setTimeout(() => this.#ensureStandby(), STANDBY_READVISED_MS * (0.2 + Math.random() * 0.8));
        break;
      case 'disconnect':
        ws.close(1000, msg.reason);
        break;
      case 'move':
        // The node is draining. Make before break: open a tunnel elsewhere while this one
        // keeps serving; the node closes it once the site has moved and its streams are done.
        if (ws !== this.#ws) break;
        this.#avoid = { endpoint, until: this.#clock.now() + 30_000 };
        this.#attempt = 0;
        // The standby takes over at once; else a new connection elsewhere, made before this one breaks.
        if (this.#promote()) {
          this.#log.info({ node: this.node, reason: msg.reason }, 'node asks us to move; the standby takes over');
          break;
        }
        this.#log.info({ node: this.node, reason: msg.reason }, 'node asks us to move; connecting elsewhere first');
        this.#ws = undefined;
        void this.#connect();
        break;
    }
  }

  /**
   * Moves the data plane of control connection `ws` to a connection of its own: an HTTP
   * upgrade naming the node's one-time key, at the endpoint the WebSocket used, then (a load
   * balancer may have sent that to another node, which does not know the key) at the node's
   * own address. The node's HTTP/2 session then runs on the socket itself. Refused both ways:
   * the WebSocket frames carry on. Unanswered (a node swamped by a reconnect storm): the key
   * is still good, so a few later rounds try again while the frames carry the data plane.
   */
  #openDirect(ws: WebSocket, endpoint: string, offer: { path: string; key: string; endpoint?: string }, round = 0) {
    if (this.#o.direct === false) return;
    const urls = [...new Set([endpoint, offer.endpoint ?? endpoint])].map((e) => new URL(offer.path, e));
    let refused = false;
    const attempt = (i: number, why: string[]) => {
      const url = urls[i];
      if (!url) {
        const again = !refused && round < DIRECT_RETRIES && ws.readyState === WebSocket.OPEN && !this.#isStopped();
        if (again) {
          const pause = 1000 * 2 ** round * (0.5 + Math.random() / 2);
          this.#clock.setTimeout(() => ws.readyState === WebSocket.OPEN && !this.#isStopped() && this.#openDirect(ws, endpoint, offer, round + 1), pause);
        }
        return this.#log.warn({ endpoint, reasons: why, retrying: again }, 'no direct data connection; the data plane stays on the WebSocket');
      }
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { headers: { connection: 'Upgrade', upgrade: DIRECT_UPGRADE, [DIRECT_KEY_HEADER]: offer.key }, timeout: 5000, localAddress: this.#o.localAddress });
      req.on('timeout', () => req.destroy(new Error('no answer in 5s')));
      req.on('error', (err) => attempt(i + 1, [...why, `${url.host}: ${err.message}`]));
      req.on('response', (res) => {
        res.resume();
        if (i === urls.length - 1) refused = true; // the node's own address answered: the key is spent or unknown
        attempt(i + 1, [...why, `${url.host}: answered ${res.statusCode}`]);
      });
      req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
        if (ws.readyState !== WebSocket.OPEN || this.#isStopped()) return socket.destroy();
        socket.setTimeout(0);
        socket.setNoDelay(true);
        socket.on('error', (err) => this.#log.debug({ err: err.message }, 'direct data connection error'));
        // The node's HTTP/2 preface may have come in the same read as its 101.
        if (head.length) socket.unshift(head);
        ws.once('close', () => socket.destroy());
        // Raw streams of this data plane go to the node this connection reached.
        if (this.#o.rawStreams !== false) Object.assign(socket, { [RAW_DIAL]: rawDialer(url, this.#o.localAddress) });
        this.#dataServer.emit('connection', socket);
        this.#direct.add(ws);
        this.#log.info({ node: this.node, via: url.host, role: ws === this.#ws ? 'primary' : 'standby' }, 'data plane on a direct connection');
      });
      req.end();
    };
    attempt(0, []);
  }

  #send(msg: ConnectorMessage) {
    if (this.#ws?.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(msg));
  }

  /** Reports target health to the cluster. */
  reportHealth(targets: Array<{ id: string; healthy: boolean }>) {
    this.#send({ v: PROTOCOL_VERSION, type: 'health', targets });
  }

  /** Jittered exponential backoff; the first retry comes within 250 ms. */
  #retry() {
    if (this.#state === 'stopped') return;
    this.#state = 'backoff';
    const cap = this.#attempt === 0 ? 250 : Math.min(10_000, 250 * 2 ** this.#attempt);
    const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
    this.#attempt++;
    this.#timer?.cancel();
    this.#timer = this.#clock.setTimeout(() => void this.#connect(), delay);
  }

  /** Says goodbye and stops (SIGTERM). */
  async stop(): Promise<void> {
    this.#state = 'stopped';
    this.#timer?.cancel();
    this.#health.stop();
    const wireguard = this.#wireguard;
    this.#wireguard = undefined;
    await Promise.all([...this.#sockets].map((ws) => {
      if (ws.readyState === WebSocket.CLOSED) return undefined;
      if (ws.readyState === WebSocket.CONNECTING) return ws.terminate(); // its close handler sees 'stopped'
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'disconnect', reason: 'connector stopping' } satisfies ConnectorMessage));
      return new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close(1000, 'bye');
        setTimeout(() => (ws.terminate(), resolve()), 2000).unref();
      });
    }));
    // The interface goes last: the node's streams in flight ran over it until the goodbye.
    await (await wireguard)?.close().catch((err) => this.#log.warn({ err: (err as Error).message }, 'could not remove the WireGuard interface'));
  }
}

/**
 * POST of a JSON body with a 5 s limit, from `localAddress` when given (fetch cannot choose
 * its source address); the status and the parsed answer (undefined when not JSON).
 */
function postJson(url: URL, body: unknown, localAddress: string | undefined): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }, timeout: 5000, localAddress, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (text.length < 65_536) text += d; // a token answer is small; more is not read
      });
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 5s')));
    req.on('error', reject);
    req.end(payload);
  });
}
