// The peer link: every node listens on peer.bind and holds one WebSocket to every other
// live node. It carries actor messages (ask/reply) and, by dropping, tells membership a
// peer may be gone. A small authenticated HTTP surface on the same port lets tools and
// tests inspect a node's actors and send a message into the cluster.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, createWebSocketStream } from 'ws';
import { ClusterError, ERROR_CODES, isClusterError, type ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Secret } from '../../core/secret.ts';
import type { z } from 'zod';
import { AskRequest, HeardAnswer, HeardQuery, PEER_PATH, PeerMessage, ReplayCache, RoutesQuery, StatsAnswer, TxtAnswer, TxtQuery, type RoutesAnswer, authHeaders, verifyAuth, type PeerIdentity } from '../../protocol/peer.ts';
import { fastParse, fastSafeParse } from '../../protocol/fast-parse.ts';
import { peerClientTls, peerRequest, type PeerTls } from './request.ts';

const MAX_PAYLOAD = 1024 * 1024;

export interface PeerHandlers {
  /** Delivers to a local actor; throws CLUSTER_ERR_ACTOR_NOT_HERE when it is not here. */
  deliver(kind: string, id: string, msg: unknown, timeoutMs: number): Promise<unknown>;
  /** Routes to an actor wherever it lives (POST /peer/v1/ask). */
  route(kind: string, id: string, msg: unknown, timeoutMs: number): Promise<unknown>;
  /** Inspection document for GET /peer/v1/node. */
  inspect(): unknown;
  /** Small summary for GET /peer/v1/stats (actors by kind), cheap enough for status pages. */
  stats(): unknown;
  /** The route table's summary for GET /peer/v1/routes (see RoutesQuery). */
  routes(dead: readonly string[], id: string | undefined): RoutesAnswer;
  /** TXT values this node's DNS serves at `name` (GET /peer/v1/txt?name=), from memory. */
  txt(name: string): string[];
  /** A link to `node` closed. */
  linkDown(node: string): void;
  /** Something arrived from `node` (a heartbeat answer, a message): it is answering. */
  heard(node: string): void;
  /** How long ago this node heard `node` (an indirect probe from another node), null: never. */
  heardAgo(node: string): number | null;
  /** A forwarded client connection for a resource's target (PROXY v2 header first). */
  forward(stream: Duplex, resourceId: string, targetId: string): void;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

/**
 * An error another node answered with. A code this release does not know (a newer node in a
 * rolling upgrade) becomes CLUSTER_ERR_PEER_UNKNOWN_ERROR naming it.
 */
export function remoteError(code: string | undefined, message: string | undefined, fields: Record<string, unknown> | undefined): ClusterError {
  const known = code !== undefined && Object.hasOwn(ERROR_CODES, code);
  if (!known) return new ClusterError('CLUSTER_ERR_PEER_UNKNOWN_ERROR', `another node answered ${code ?? 'an error without a code'}: ${message ?? ''}`, { remoteCode: code ?? '' });
  return new ClusterError(code as ErrorCode, message ?? 'remote error', (fields ?? {}) as never);
}

class OutboundLink {
  readonly ws: WebSocket;
  readonly ready: Promise<void>;
  readonly pending = new Map<number, Pending>();
  onMessage: (() => void) | undefined;
  #rid = 0;

  constructor(url: string, headers: Record<string, string>, tls: PeerTls | undefined, onClose: () => void, onHeard: () => void) {
    this.ws = new WebSocket(url, { headers, maxPayload: MAX_PAYLOAD, handshakeTimeout: 2000, ...peerClientTls(tls) });
    this.ready = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('open', onHeard);
    this.ws.on('pong', onHeard);
    this.ready.catch(() => {});
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => this.#onMessage(data.toString()));
    this.ws.on('close', () => {
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new ClusterError('CLUSTER_ERR_ACTOR_UNREACHABLE', 'peer link closed with the message in flight (delivery unknown)', { kind: '', id: '', attempts: 1 }));
      }
      this.pending.clear();
      onClose();
    });
  }

  #onMessage(text: string) {
    this.onMessage?.();
    let m: PeerMessage;
    try {
      m = fastParse(PeerMessage, JSON.parse(text));
    } catch {
      this.ws.close(1008, 'CLUSTER_ERR_PEER_BAD_MESSAGE');
      return;
    }
    if (m.t !== 'reply') return;
    const p = this.pending.get(m.rid);
    if (!p) return;
    this.pending.delete(m.rid);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.value);
    else p.reject(remoteError(m.code, m.message, m.fields));
  }

  async ask(kind: string, id: string, msg: unknown, timeoutMs: number): Promise<unknown> {
    try {
      await this.ready;
    } catch (err) {
      // Not sent at all, so the caller may safely try the actor's next owner.
      throw new ClusterError('CLUSTER_ERR_ACTOR_NOT_HERE', `peer link down: ${(err as Error).message}`, { kind, id }, { cause: err });
    }
    const rid = this.#rid++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new ClusterError('CLUSTER_ERR_ACTOR_ASK_TIMEOUT', `${kind}/${id} did not answer in ${timeoutMs}ms`, { kind, id, timeoutMs }));
      }, timeoutMs + 500);
      this.pending.set(rid, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ t: 'ask', rid, kind, id, msg, timeoutMs } satisfies PeerMessage));
    });
  }
}

export class PeerLink {
  readonly #secret: Secret;
  readonly #self: () => PeerIdentity;
  readonly #handlers: PeerHandlers;
  readonly #log: Logger;
  readonly #server: Server;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD });
  readonly #out = new Map<string, { address: string; incarnation: string; link: OutboundLink }>();
  readonly #replay = new ReplayCache();
  readonly #tls: PeerTls | undefined;
  #closing = false;

  /** `tls`: serve and dial the peer port over TLS with the cluster CA's certificates. */
  constructor(opts: { secret: Secret; self: () => PeerIdentity; handlers: PeerHandlers; logger: Logger; tls?: PeerTls }) {
    this.#secret = opts.secret;
    this.#self = opts.self;
    this.#handlers = opts.handlers;
    this.#tls = opts.tls;
    this.#log = opts.logger.child({ component: 'peer' });
    const handle = (req: IncomingMessage, res: ServerResponse) => void this.#http(req, res);
    this.#server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, handle) : createServer(handle);
    this.#server.on('upgrade', (req, socket, head) => this.#upgrade(req, socket, head));
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve());
    });
  }

  /** `ws` or `wss`, as the peer port speaks TLS or not. */
  #scheme(plain: 'ws'): string {
    return this.#tls ? `${plain}s` : plain;
  }

  #verify(req: IncomingMessage) {
    return verifyAuth(this.#secret, req.headers, { method: req.method ?? 'GET', path: req.url ?? '', self: this.#self().node }, this.#replay);
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer) {
    const who = this.#verify(req);
    // /peer/v1/forward/<resource>/<target id | "tls">: a client connection for a target, or
    // raw TLS for this node to terminate.
    const forward = /^\/peer\/v1\/forward\/([0-9a-f-]{36})\/([0-9a-f-]{36}|tls)$/.exec(req.url ?? '');
    if (forward && !('refused' in who) && !this.#closing) {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#handlers.forward(createWebSocketStream(ws), forward[1]!, forward[2]!));
      return;
    }
    if (req.url !== PEER_PATH || 'refused' in who || this.#closing) {
      this.#log.warn({ reason: 'refused' in who ? who.refused : 'bad path or closing', from: req.socket.remoteAddress }, 'peer link refused');
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#serve(ws, who));
  }

  #serve(ws: WebSocket, who: PeerIdentity) {
    ws.on('error', () => {});
    ws.on('ping', () => this.#handlers.heard(who.node));
    ws.on('message', async (data) => {
      this.#handlers.heard(who.node);
      let m: PeerMessage;
      try {
        m = fastParse(PeerMessage, JSON.parse(data.toString()));
      } catch {
        this.#log.warn({ peer: who.node }, 'malformed peer message; closing link');
        ws.close(1008, 'CLUSTER_ERR_PEER_BAD_MESSAGE');
        return;
      }
      if (m.t !== 'ask') return;
      let reply: PeerMessage;
      try {
        reply = { t: 'reply', rid: m.rid, ok: true, value: await this.#handlers.deliver(m.kind, m.id, m.msg, m.timeoutMs) };
      } catch (err) {
        reply = isClusterError(err)
          ? { t: 'reply', rid: m.rid, ok: false, code: err.code, message: err.message, fields: err.fields as Record<string, unknown> }
          : { t: 'reply', rid: m.rid, ok: false, code: 'CLUSTER_ERR_API_INTERNAL', message: (err as Error).message };
      }
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(reply));
    });
  }

  async #http(req: IncomingMessage, res: ServerResponse) {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const who = this.#verify(req);
    if ('refused' in who) return send(401, new ClusterError('CLUSTER_ERR_PEER_AUTH_FAILED', who.refused, { reason: who.refused }).toJSON());
    try {
      if (req.method === 'GET' && req.url === `${PEER_PATH}/node`) return send(200, this.#handlers.inspect());
      if (req.method === 'GET' && req.url === `${PEER_PATH}/stats`) return send(200, this.#handlers.stats());
      if (req.method === 'GET' && req.url?.startsWith(`${PEER_PATH}/txt?`)) {
        const q = TxtQuery.safeParse(Object.fromEntries(new URL(req.url, 'http://peer').searchParams));
        if (!q.success) return send(400, { code: 'CLUSTER_ERR_API_BAD_REQUEST', message: q.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
        return send(200, { values: this.#handlers.txt(q.data.name) });
      }
      if (req.method === 'GET' && (req.url === `${PEER_PATH}/routes` || req.url?.startsWith(`${PEER_PATH}/routes?`))) {
        const q = RoutesQuery.safeParse(Object.fromEntries(new URL(req.url, 'http://peer').searchParams));
        if (!q.success) return send(400, { code: 'CLUSTER_ERR_API_BAD_REQUEST', message: q.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
        return send(200, this.#handlers.routes(q.data.dead ? q.data.dead.split(',') : [], q.data.id));
      }
      if (req.method === 'GET' && req.url?.startsWith(`${PEER_PATH}/heard?`)) {
        const q = HeardQuery.safeParse(Object.fromEntries(new URL(req.url, 'http://peer').searchParams));
        if (!q.success) return send(400, { code: 'CLUSTER_ERR_API_BAD_REQUEST', message: q.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
        return send(200, { agoMs: this.#handlers.heardAgo(q.data.node) });
      }
      if (req.method === 'POST' && req.url === `${PEER_PATH}/ask`) {
        let body = '';
        for await (const chunk of req) {
          body += chunk;
          if (body.length > MAX_PAYLOAD) return send(413, { code: 'CLUSTER_ERR_API_BAD_REQUEST', message: 'body too large' });
        }
        const parsed = fastSafeParse(AskRequest, JSON.parse(body || '{}'));
        if (!parsed.success) return send(400, { code: 'CLUSTER_ERR_API_BAD_REQUEST', message: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
        const { kind, id, msg, timeoutMs } = parsed.data;
        return send(200, { value: await this.#handlers.route(kind, id, msg, timeoutMs) });
      }
      return send(404, { code: 'CLUSTER_ERR_API_NOT_FOUND', message: 'no such peer route' });
    } catch (err) {
      if (isClusterError(err)) return send(err.status ?? 500, err.toJSON());
      if (err instanceof SyntaxError) return send(400, { code: 'CLUSTER_ERR_API_BAD_REQUEST', message: 'body is not JSON' });
      this.#log.error({ err }, 'peer request failed');
      return send(500, { code: 'CLUSTER_ERR_API_INTERNAL', message: 'internal error' });
    }
  }

  /** A GET to another node, its answer checked against `schema` (it crossed a process). */
  async #get<T>(member: { id: string; peer: string }, path: string, schema: z.ZodType<T>, timeoutMs: number): Promise<T> {
    const res = await peerRequest({ address: member.peer, target: member.id, method: 'GET', path, secret: this.#secret, self: this.#self(), tls: this.#tls, timeoutMs });
    if (res.status !== 200) throw new Error(`${path} of ${member.id}: HTTP ${res.status}`);
    const parsed = schema.safeParse(res.body);
    if (!parsed.success) throw new ClusterError('CLUSTER_ERR_PEER_BAD_MESSAGE', `${path} of ${member.id}: unexpected answer`, { reason: parsed.error.issues[0]?.message ?? 'invalid' });
    return parsed.data;
  }

  /** GET /peer/v1/stats of another node (for the admin API's node list). */
  stats(member: { id: string; peer: string }, timeoutMs: number): Promise<{ actors: Record<string, number> }> {
    return this.#get(member, `${PEER_PATH}/stats`, StatsAnswer, timeoutMs);
  }

  /** How long ago another node heard `about` (an indirect probe). */
  async heardVia(member: { id: string; peer: string }, about: string, timeoutMs: number): Promise<number | null> {
    return (await this.#get(member, `${PEER_PATH}/heard?node=${encodeURIComponent(about)}`, HeardAnswer, timeoutMs)).agoMs;
  }

  /** Heartbeat: a WebSocket ping on every open link (answered by the peer's link code, so a stalled peer does not answer). */
  ping() {
    for (const { link } of this.#out.values()) if (link.ws.readyState === WebSocket.OPEN) link.ws.ping();
  }

  /** The TXT values another node's DNS serves at `name`. */
  async txt(member: { id: string; peer: string }, name: string, timeoutMs: number): Promise<string[]> {
    return (await this.#get(member, `${PEER_PATH}/txt?name=${encodeURIComponent(name)}`, TxtAnswer, timeoutMs)).values;
  }

  /** Opens links to these members and closes links to nodes no longer listed. */
  sync(members: Array<{ id: string; incarnation: string; peer: string }>) {
    if (this.#closing) return;
    const self = this.#self();
    const want = new Map(members.filter((m) => m.id !== self.node).map((m) => [m.id, m]));
    for (const [id, entry] of this.#out) {
      const m = want.get(id);
      if (!m || m.incarnation !== entry.incarnation || m.peer !== entry.address) {
        this.#out.delete(id);
        entry.link.ws.terminate();
      }
    }
    for (const [id, m] of want) {
      if (this.#out.has(id)) continue;
      const link = new OutboundLink(`${this.#scheme('ws')}://${m.peer}${PEER_PATH}`, authHeaders(this.#secret, self, { method: 'GET', path: PEER_PATH, target: id }), this.#tls, () => {
        if (this.#out.get(id)?.link === link) {
          this.#out.delete(id);
          if (!this.#closing) this.#handlers.linkDown(id);
        }
      }, () => this.#handlers.heard(id));
      link.onMessage = () => this.#handlers.heard(id);
      this.#out.set(id, { address: m.peer, incarnation: m.incarnation, link });
    }
  }

  /** Opens a byte stream to another node's peer port for a forwarded client connection. */
  openForward(member: { id: string; peer: string }, resourceId: string, targetId: string, header: Buffer, timeoutMs = 2000): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const path = `${PEER_PATH}/forward/${resourceId}/${targetId}`;
      const headers = authHeaders(this.#secret, this.#self(), { method: 'GET', path, target: member.id });
      const ws = new WebSocket(`${this.#scheme('ws')}://${member.peer}${path}`, { headers, maxPayload: MAX_PAYLOAD * 16, handshakeTimeout: timeoutMs, ...peerClientTls(this.#tls) });
      ws.once('open', () => {
        const stream = createWebSocketStream(ws);
        stream.write(header);
        resolve(stream);
      });
      ws.once('error', reject);
    });
  }

  /** Asks an actor on another node over its link. */
  ask(node: string, kind: string, id: string, msg: unknown, timeoutMs: number): Promise<unknown> {
    const entry = this.#out.get(node);
    if (!entry) return Promise.reject(new ClusterError('CLUSTER_ERR_ACTOR_NOT_HERE', `no link to ${node}`, { kind, id }));
    return entry.link.ask(kind, id, msg, timeoutMs);
  }

  async close(): Promise<void> {
    this.#closing = true;
    for (const { link } of this.#out.values()) link.ws.terminate();
    this.#out.clear();
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
  }
}
