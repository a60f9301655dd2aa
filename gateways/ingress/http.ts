// HTTP resources. On every node:
//  - :443 reads the ClientHello's server name without consuming it. If one of the
//    resource's tunnels is here, TLS is terminated here; otherwise the raw bytes go to the
//    node holding a tunnel (PROXY v2 first), which terminates. Unknown names are closed.
//  - :80 serves plain-HTTP resources by Host and redirects TLS resources to https.
// The proxy speaks HTTP/1.1 to the target through the tunnel: Host kept, X-Forwarded-For/
// -Proto/-Host set from the real client, bodies streamed both ways, Upgrade (WebSocket)
// passed through, and coded 502/503/504 answers when the path to the target fails.
// A resource with an access policy is checked first (gateways/access/guard.ts); the portal's
// hostname is served here on every node. Identity headers (`Remote-*`) reach a target only
// as this edge set them. Connections from the operator's TCP load balancers
// (`proxyProtocolFrom`) start with a PROXY v2 header naming the real client.
import { STATUS_CODES, createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import { ClusterError, ERROR_CODES, isClusterError, type ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { ConnectionCounter } from '../../core/rate-buckets.ts';
import type { Address } from '../../cluster.config.ts';
import type { TunnelRegistry } from '../connector/tunnels.ts';
import type { CertificateStore } from './certs.ts';
import { MAX_HELLO, readClientHello } from './client-hello.ts';
import { decodeProxyV2, encodeProxyV2, type ProxyAddresses } from './proxy-protocol.ts';
import { cookieName, type Identity, type RequestHead, type Verdict } from '../access/guard.ts';
import type { Route, RouteTable, RouteTarget } from './routes.ts';
import { headerLine, isHopByHop, requestLine } from './request-head.ts';
import { exchange, type ExchangeOutcome } from './upstream-exchange.ts';
import { UpstreamPool, type UpstreamPath } from './upstream-pool.ts';
import { chooseTarget, noTarget, opener, type Choice, type Placement } from './upstream.ts';

const SAFE_RETRY = new Set(['GET', 'HEAD', 'OPTIONS']);

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** Headers only this edge may set: a client's own copies are dropped, never passed on. */
/**
 * Access control as the ingress uses it: the guard's decision for a protected resource, and
 * the portal. On the ingress thread both are the main thread's (asked for; the portal's
 * connections handed back to it at their ClientHello: `elsewhere`).
 */
export interface IngressAccess {
  guard: { check(req: RequestHead, route: Route, proto: 'http' | 'https', client: string): Verdict | Promise<Verdict> };
  portal?: { hostname: string; handle(req: IncomingMessage, res: ServerResponse, client: string): void | Promise<void>; elsewhere?: (sock: Socket, head: Buffer, client: string) => void };
}

const EDGE_ONLY = /^(x-forwarded-.*|forwarded|x-real-ip|remote-.*|x-cluster-access-token)$/;
/** EDGE_ONLY, the regex run only for names starting as one of those can (x, f, r): most do not. */
const edgeOnly = (name: string) => {
  const c = name.charCodeAt(0);
  return (c === 120 || c === 102 || c === 114) && EDGE_ONLY.test(name);
};

/**
 * The pool key of a target reached through `node`: keyed by where the stream ends too, so
 * after an admin moves a target no request reuses a kept-alive stream to its old address.
 * Made once per route target object (a changed target is a new object) and node.
 */
const poolKeys = new WeakMap<RouteTarget, Map<string, string>>();
function poolKey(t: RouteTarget, node: string): string {
  let byNode = poolKeys.get(t);
  if (!byNode) poolKeys.set(t, (byNode = new Map()));
  let key = byNode.get(node);
  if (key === undefined) byNode.set(node, (key = `${t.id}=${t.scheme}://${t.host}:${t.port}@${node}`));
  return key;
}

/** A header value from user data: printable ASCII kept, anything else percent-encoded. */
const headerSafe = (v: string) => v.replace(/[^\x20-\x7e]/gu, (c) => encodeURIComponent(c));

/** The Cookie header without the resource session cookies (they are the cluster's, not the target's). */
function withoutSessionCookies(cookie: string | undefined): string | undefined {
  if (!cookie) return cookie;
  const names = [cookieName(true), cookieName(false)];
  const kept = cookie.split(';').filter((p) => !names.includes(p.split('=', 1)[0]!.trim()));
  return kept.length ? kept.join(';').trim() : undefined;
}

/**
 * Answers a request the parser refused (both Content-Length and Transfer-Encoding, a bad
 * chunk size, obs-fold, an unknown transfer coding: what request smuggling is made of) with
 * a coded 400 and closes the connection; nothing of it reaches a target.
 */
function refuseMalformed(err: Error & { code?: string }, sock: Duplex) {
  if (!sock.writable || err.code === 'ECONNRESET') return sock.destroy();
  const body = JSON.stringify({ code: 'CLUSTER_ERR_INGRESS_BAD_REQUEST', message: 'malformed or ambiguous HTTP request', reason: err.code ?? 'parse error' });
  sock.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

export interface HttpIngressDeps {
  routes: RouteTable;
  tunnels: TunnelRegistry;
  placement: Placement;
  certs: CertificateStore;
  http: Address;
  https: Address;
  logger: Logger;
  /** Longest wait for the target's response headers. @default 60s */
  responseTimeoutMs?: number;
  /** Longest a TLS connection may take to send its whole ClientHello (a deadline, not an idle timeout). */
  helloTimeoutMs: number;
  /** Connections one source (IPv4 address, IPv6 /56) may hold open on :80 and on :443. */
  maxConnectionsPerSource: number;
  /** Access control for resources with a policy, and the portal every node serves. */
  access?: IngressAccess;
  /** Load balancers whose connections start with a PROXY v2 header (on :80 and :443). */
  proxyProtocolFrom?: string[];
  /** Called once per proxied request when its response ends (metrics). */
  onRequest?: (resourceId: string, status: number, seconds: number) => void;
}

/** Remote-User/-Email/-Name/-Role; a part the sign-in did not give (an e-mail code has no name or role) is left out. */
function identityLines(u: Identity): string {
  let lines = headerLine('remote-user', headerSafe(u.email)) + headerLine('remote-email', headerSafe(u.email));
  if (u.name) lines += headerLine('remote-name', headerSafe(u.name));
  if (u.role) lines += headerLine('remote-role', headerSafe(u.role));
  return lines;
}

function refuse(res: ServerResponse, v: Extract<Verdict, { allow: false }>) {
  res.writeHead(v.status, v.headers);
  res.end(v.body);
}

/** The Host header's name, lower-cased, without a port (no regular expression per request). */
function hostOf(req: IncomingMessage): string {
  const host = (req.headers.host ?? '').toLowerCase();
  const colon = host.lastIndexOf(':');
  if (colon < 0 || colon === host.length - 1) return host;
  for (let i = colon + 1; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c < 48 || c > 57) return host;
  }
  return host.slice(0, colon);
}

function errorPage(res: ServerResponse, code: ErrorCode, message: string) {
  if (res.headersSent) return res.destroy();
  const status = ERROR_CODES[code].status ?? 502;
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify({ code, message }));
}

/** One proxied request on its way: what the steps after the target's choice need (one object, not a closure per step). */
class Proxied {
  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly proto: 'http' | 'https',
    readonly route: Route,
    readonly pass: Extract<Verdict, { allow: true }> | undefined,
    readonly retried: boolean,
    /** When the request came (performance.now(); 0 without metrics). */
    readonly t0: number,
    /** The kept-alive pool's key for the target and the way to it. */
    readonly key: string,
    /** The target's host name: the Host sent when the client sent none. */
    readonly servername: string,
  ) {}
}

export class HttpIngress {
  readonly #d: HttpIngressDeps;
  readonly #log: Logger;
  /** Real client address of each connection (also for connections forwarded to us). */
  readonly #clients = new WeakMap<object, string>();
  readonly #plain: Server;
  readonly #pool = new UpstreamPool();
  readonly #secure: Server;
  #tlsListener: NetServer | undefined;
  #plainListener: NetServer | undefined;
  readonly #trusted: Set<string>;
  readonly #plainBySource: ConnectionCounter;
  readonly #tlsBySource: ConnectionCounter;

  constructor(deps: HttpIngressDeps) {
    this.#d = deps;
    this.#log = deps.logger.child({ component: 'ingress-http' });
    this.#trusted = new Set(deps.proxyProtocolFrom ?? []);
    this.#plainBySource = new ConnectionCounter(deps.maxConnectionsPerSource);
    this.#tlsBySource = new ConnectionCounter(deps.maxConnectionsPerSource);
    this.#plain = createHttpServer((req, res) => void this.#handle(req, res, 'http'));
    this.#plain.on('connection', (sock: Socket) => void this.#plainBySource.admit(sock));
    this.#secure = createHttpServer((req, res) => void this.#handle(req, res, 'https'));
    for (const s of [this.#plain, this.#secure]) {
      s.on('upgrade', (req, sock, head) => void this.#upgrade(req, sock as Socket, head, s === this.#secure ? 'https' : 'http'));
      s.on('clientError', (err, sock) => refuseMalformed(err, sock));
      s.headersTimeout = 30_000;
      s.requestTimeout = 0; // bodies may stream for long; the target's own timeouts apply
    }
  }

  async listen(): Promise<void> {
    const { http, https } = this.#d;
    if (this.#trusted.size) {
      this.#plainListener = createNetServer((sock) => void this.#proxied(sock).then((ok) => ok && (this.#plain.emit('connection', sock), sock.resume())));
      await new Promise<void>((resolve, reject) => this.#plainListener!.once('error', reject).listen(http.port, http.host, () => resolve()));
    } else await new Promise<void>((resolve, reject) => this.#plain.once('error', reject).listen(http.port, http.host, () => resolve()));
    this.#tlsListener = createNetServer((sock) => void this.#proxied(sock).then((ok) => ok && this.#tlsBySource.admit(sock) !== undefined && this.#peek(sock)));
    await new Promise<void>((resolve, reject) => this.#tlsListener!.once('error', reject).listen(https.port, https.host, () => resolve()));
  }

  /**
   * A connection from a trusted load balancer: reads its PROXY v2 header and records the
   * client it names (a missing or bad header closes the connection). Others pass as they are.
   */
  #proxied(sock: Socket): Promise<boolean> {
    sock.on('error', () => {});
    if (!this.#trusted.has(sock.remoteAddress ?? '')) return Promise.resolve(true);
    return new Promise((resolve) => {
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => (sock.destroy(), resolve(false)), this.#d.helloTimeoutMs);
      const onData = (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        const h = decodeProxyV2(buf);
        if ('error' in h && (h.error === 'short header' || h.error === 'truncated header') && buf.length < 536) return;
        clearTimeout(timer);
        sock.off('data', onData);
        sock.pause();
        if ('error' in h) {
          this.#log.debug({ from: sock.remoteAddress, reason: h.error }, 'load balancer connection without a valid PROXY header');
          sock.destroy();
          return resolve(false);
        }
        if (h.addresses) this.#clients.set(sock, h.addresses.source.address);
        if (buf.length > h.length) sock.unshift(buf.subarray(h.length));
        resolve(true);
      };
      sock.on('data', onData);
    });
  }

  #clientOf(req: IncomingMessage): string {
    return this.#clients.get(req.socket) ?? req.socket.remoteAddress ?? 'unknown';
  }

  /** Reads the ClientHello, then terminates here or forwards the raw bytes. */
  #peek(sock: Socket) {
    sock.on('error', () => {});
    sock.setTimeout(10_000, () => sock.destroy());
    // A deadline for the whole hello: a byte now and then would reset an idle timeout forever.
    const deadline = setTimeout(() => sock.destroy(), this.#d.helloTimeoutMs);
    sock.once('close', () => clearTimeout(deadline));
    let buf = Buffer.alloc(0);
    const onData = async (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const hello = readClientHello(buf);
      if (hello.state === 'incomplete' && buf.length < MAX_HELLO) return;
      clearTimeout(deadline);
      sock.off('data', onData);
      sock.pause();
      if (hello.state !== 'done' || !hello.serverName) {
        this.#log.debug({ from: sock.remoteAddress, reason: hello.state === 'error' ? hello.reason : 'no server name' }, 'tls connection refused');
        return sock.destroy();
      }
      const source = this.#clients.get(sock) ?? sock.remoteAddress ?? '0.0.0.0';
      if (hello.serverName === this.#d.access?.portal?.hostname) {
        // The portal is served by every node: here, or by the thread that runs it (elsewhere).
        sock.setTimeout(0);
        const elsewhere = this.#d.access.portal.elsewhere;
        if (elsewhere) return elsewhere(sock, buf, source);
        sock.unshift(buf);
        return this.terminateTls(sock, source);
      }
      const route = this.#routeFor(hello.serverName);
      if (!route) return sock.destroy();
      const local = route.targets.some((t) => t.enabled && t.healthy && this.#d.tunnels.has(t.siteId));
      const client: ProxyAddresses = { source: { address: source, port: sock.remotePort ?? 0 }, destination: { address: sock.localAddress ?? '0.0.0.0', port: sock.localPort ?? 0 } };
      if (local) {
        sock.setTimeout(0);
        sock.unshift(buf);
        return this.terminateTls(sock, client.source.address);
      }
      try {
        const choice = chooseTarget(route, this.#d.tunnels, this.#d.placement, 'tcp');
        if (!choice || choice.node === 'local') throw new ClusterError('CLUSTER_ERR_INGRESS_NO_TARGET', 'no online target', { resourceId: route.resourceId });
        const upstream = await this.#d.placement.forward(choice.node, route.resourceId, 'tls', encodeProxyV2(client));
        upstream.write(buf);
        sock.setTimeout(0);
        pipeline(sock, upstream, sock, () => {});
        sock.resume();
      } catch (err) {
        // No owner to forward to (the site's tunnel is moving, or its node just died): answer
        // here instead of resetting; the request path chooses again and says 503 if it must.
        this.#log.warn({ host: hello.serverName, err: (err as Error).message }, 'tls connection not forwarded; terminating here');
        sock.setTimeout(0);
        sock.unshift(buf);
        this.terminateTls(sock, client.source.address);
      }
    };
    sock.on('data', onData);
    sock.resume(); // paused when a PROXY header was read first
  }

  /** Terminates TLS on a raw stream (a local socket, or one forwarded to us) and serves HTTP. */
  terminateTls(stream: Duplex, clientAddress: string) {
    const tls = new TLSSocket(stream as Socket, { isServer: true, SNICallback: this.#d.certs.sniCallback, ALPNProtocols: ['http/1.1'] });
    tls.on('error', () => tls.destroy());
    this.#clients.set(tls, clientAddress);
    this.#secure.emit('connection', tls);
  }

  #routeFor(hostname: string): Route | undefined {
    return this.#d.routes.byHost(hostname);
  }

  /** How to open a stream to the chosen target: through a local tunnel or another node. */
  #pathFor(route: Route, choice: Choice, client: string): UpstreamPath {
    const t = choice.target;
    const openFor = opener(route, choice, this.#d, 'tcp');
    // A forwarded stream's header names the first client; later requests on a pooled stream carry theirs in X-Forwarded-For.
    const open = () => openFor({ source: { address: client, port: 0 }, destination: { address: '0.0.0.0', port: 0 } });
    return { key: poolKey(t, choice.node), tls: t.scheme === 'https', servername: t.host, open };
  }

  /** A fresh (unpooled) byte stream to a target, for upgraded connections. */
  async #upstream(route: Route, client: string): Promise<Duplex> {
    const choice = chooseTarget(route, this.#d.tunnels, this.#d.placement, 'tcp');
    if (!choice) throw noTarget(route);
    const path = this.#pathFor(route, choice, client);
    const stream = await path.open();
    return path.tls ? tlsConnect({ socket: stream as Socket, servername: path.servername, rejectUnauthorized: false }) : stream;
  }

  /**
   * The request head for the target, built as one string: the client's headers but the
   * hop-by-hop ones, those its Connection header names and those only this edge may set; the
   * resource's session cookies and checked Basic credentials taken out; the identity a sign-in
   * gave; X-Forwarded-For/-Proto/-Host from the real client; `extra` lines last (an upgrade's).
   * `servername`: the Host sent when the client sent none.
   */
  #forwardedHead(req: IncomingMessage, proto: 'http' | 'https', pass: Extract<Verdict, { allow: true }> | undefined, servername: string | undefined, extra = ''): string {
    const h = req.headers;
    let head = requestLine(req.method ?? 'GET', pass?.url ?? req.url ?? '/');
    const connection = h.connection;
    const named = connection ? connection.split(',').map((x) => x.trim().toLowerCase()) : undefined;
    let sentHost = false;
    for (const k in h) {
      const v = h[k];
      if (v === undefined || isHopByHop(k) || edgeOnly(k) || named?.includes(k)) continue;
      if (pass && k === 'cookie') {
        const cookie = withoutSessionCookies(v as string);
        if (cookie !== undefined) head += headerLine(k, cookie);
        continue;
      }
      // Basic credentials the cluster checked were for the cluster, not the target.
      if (pass?.consumedAuthorization && k === 'authorization') continue;
      if (k === 'host') sentHost = true;
      if (typeof v === 'string') head += headerLine(k, v);
      else for (const x of v) head += headerLine(k, x);
    }
    if (!sentHost && servername !== undefined) head += headerLine('host', servername);
    if (pass?.identity) head += identityLines(pass.identity);
    // A body goes on framed as it came: its length, or chunked (re-chunked by the exchange).
    if (h['transfer-encoding'] !== undefined) head += 'transfer-encoding: chunked\r\n';
    // We are the edge: the client's own X-Forwarded-* are not believed.
    head += headerLine('x-forwarded-for', this.#clientOf(req)) + (proto === 'http' ? 'x-forwarded-proto: http\r\n' : 'x-forwarded-proto: https\r\n') + headerLine('x-forwarded-host', h.host ?? '');
    return `${head}${extra}\r\n`;
  }

  #handle(req: IncomingMessage, res: ServerResponse, proto: 'http' | 'https') {
    const host = hostOf(req);
    const portal = this.#d.access?.portal;
    if (portal && host === portal.hostname) {
      if (proto === 'http') return void res.writeHead(301, { location: `https://${portal.hostname}${req.url ?? '/'}` }).end();
      return void portal.handle(req, res, this.#clientOf(req));
    }
    const route = this.#routeFor(host);
    if (!route) return errorPage(res, 'CLUSTER_ERR_API_NOT_FOUND', `no resource for ${host || 'this host'}`);
    const t0 = this.#d.onRequest ? performance.now() : 0; // a double: no BigInt made per request
    if (proto === 'http' && route.tls) {
      this.#counted(res, route, t0);
      res.writeHead(301, { location: `https://${host}${req.url ?? '/'}` });
      return res.end();
    }
    if (route.access && this.#d.access) {
      const v = this.#d.access.guard.check(req, route, proto, this.#clientOf(req));
      if (!(v instanceof Promise)) return this.#checked(req, res, proto, route, v, t0);
      return void v.then(
        (verdict) => this.#checked(req, res, proto, route, verdict, t0),
        (err) => this.#failed(res, route, t0, isClusterError(err) ? err.code : 'CLUSTER_ERR_ACCESS_DENIED', `access check failed: ${(err as Error).message}`),
      );
    } else if (route.access) {
      return this.#failed(res, route, t0, 'CLUSTER_ERR_ACCESS_DENIED', 'access control is not running on this node');
    }
    this.#send(req, res, proto, route, undefined, false, t0);
  }

  /**
   * Counts a response this node answers itself (a redirect, a refusal, an error page) when it
   * has been sent. A proxied response is counted by the exchange's end instead: no listener
   * and closure per request on the common path.
   */
  #counted(res: ServerResponse, route: Route, t0: number) {
    const onRequest = this.#d.onRequest;
    if (onRequest) res.once('finish', () => onRequest(route.resourceId, res.statusCode, (performance.now() - t0) / 1000));
  }

  #failed(res: ServerResponse, route: Route, t0: number, code: ErrorCode, message: string) {
    this.#counted(res, route, t0);
    errorPage(res, code, message);
  }

  #checked(req: IncomingMessage, res: ServerResponse, proto: 'http' | 'https', route: Route, verdict: Verdict, t0: number) {
    if (!verdict.allow) {
      this.#counted(res, route, t0);
      return refuse(res, verdict);
    }
    this.#send(req, res, proto, route, verdict, false, t0);
  }

  /**
   * Sends the request on a kept-alive stream to the target (synchronously: no promise on the
   * common path) or on a new one. A kept-alive stream can close just as it is reused (the
   * tunnel moved, the target closed an idle connection): a request without a body is then
   * sent once more.
   */
  #send(req: IncomingMessage, res: ServerResponse, proto: 'http' | 'https', route: Route, pass: Extract<Verdict, { allow: true }> | undefined, retried: boolean, t0: number) {
    const choice = chooseTarget(route, this.#d.tunnels, this.#d.placement, 'tcp');
    if (!choice) {
      const err = noTarget(route);
      return this.#failed(res, route, t0, err.code, err.message);
    }
    // The pool is asked by key first: the way to open a new stream is made only when none is kept.
    const key = poolKey(choice.target, choice.node);
    const kept = this.#pool.take(key);
    const p = new Proxied(req, res, proto, route, pass, retried, t0, key, choice.target.host);
    if (kept) return this.#exchange(p, kept, true);
    this.#pool.open(this.#pathFor(route, choice, this.#clientOf(req))).then(
      (stream) => {
        if (res.destroyed) return this.#pool.release(key, stream, false); // the client left while the stream opened
        this.#exchange(p, stream, false);
      },
      // Coded when no way or no tunnel stream was had; else the target's TLS failed.
      (err) => this.#failed(res, route, t0, isClusterError(err) ? err.code : 'CLUSTER_ERR_TUNNEL_TARGET_REFUSED', (err as Error).message),
    );
  }

  #exchange(p: Proxied, stream: Duplex, reused: boolean) {
    const { req, res } = p;
    let head: string;
    try {
      head = this.#forwardedHead(req, p.proto, p.pass, p.servername);
    } catch (err) {
      this.#pool.release(p.key, stream, true);
      return this.#failed(res, p.route, p.t0, isClusterError(err) ? err.code : 'CLUSTER_ERR_INGRESS_BAD_REQUEST', (err as Error).message);
    }
    const body = hasBody(req) ? { from: req, chunked: req.headers['transfer-encoding'] !== undefined } : undefined;
    exchange(stream, { method: req.method ?? 'GET', head, body, timeoutMs: this.#d.responseTimeoutMs ?? 60_000 }, res, (outcome) => this.#exchanged(p, stream, reused, outcome));
  }

  #exchanged(p: Proxied, stream: Duplex, reused: boolean, outcome: ExchangeOutcome) {
    const { req, res, route } = p;
    if (outcome.sent) {
      if (outcome.finished) this.#d.onRequest?.(route.resourceId, res.statusCode, (performance.now() - p.t0) / 1000);
      return this.#pool.release(p.key, stream, outcome.reusable);
    }
    this.#pool.release(p.key, stream, false);
    if (!p.retried && reused && SAFE_RETRY.has(req.method ?? '') && !hasBody(req)) return this.#send(req, res, p.proto, route, p.pass, true, p.t0);
    const err = outcome.error;
    this.#failed(res, route, p.t0, isClusterError(err) ? err.code : 'CLUSTER_ERR_TUNNEL_TARGET_REFUSED', `target failed: ${err.message}`);
  }

  /**
   * Upgrade (WebSocket) requests: the request head goes through; the client's bytes follow
   * only once the target answered 101 (before that they would be read as more HTTP requests
   * on the target's connection). Any other answer is passed back and the connection closed.
   */
  async #upgrade(req: IncomingMessage, sock: Socket, head: Buffer, proto: 'http' | 'https') {
    sock.on('error', () => {});
    const route = this.#routeFor(hostOf(req));
    if (!route || (proto === 'http' && route.tls)) return sock.destroy();
    let pass: Extract<Verdict, { allow: true }> | undefined;
    if (route.access) {
      const v = this.#d.access ? await this.#d.access.guard.check(req, route, proto, this.#clientOf(req)) : undefined;
      if (!v?.allow) {
        // The answer a plain request would get (401, 403, a redirect, 429, 503), then close.
        const refused = v ?? { status: 403, headers: { 'content-type': 'application/json' }, body: '' };
        const head = Object.entries(refused.headers).flatMap(([k, x]) => (Array.isArray(x) ? x : [x]).map((y) => `${k}: ${y}`));
        return void sock.end(`HTTP/1.1 ${refused.status} ${STATUS_CODES[refused.status] ?? ''}\r\n${[...head, 'connection: close', `content-length: ${Buffer.byteLength(refused.body)}`].join('\r\n')}\r\n\r\n${refused.body}`);
      }
      pass = v;
    }
    let stream: Duplex;
    try {
      stream = await this.#upstream(route, this.#clientOf(req));
    } catch (err) {
      this.#log.warn({ host: hostOf(req), err: (err as Error).message }, 'upgrade not routed');
      return void sock.end(`HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    }
    stream.on('error', () => sock.destroy());
    let requestHead: string;
    try {
      requestHead = this.#forwardedHead(req, proto, pass, undefined, `connection: Upgrade\r\n${headerLine('upgrade', req.headers.upgrade ?? 'websocket')}`);
    } catch {
      stream.destroy();
      return void sock.end(`HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    }
    stream.write(requestHead, 'latin1');
    sock.pause();
    let answer = Buffer.alloc(0);
    const onAnswer = (chunk: Buffer) => {
      answer = Buffer.concat([answer, chunk]);
      const end = answer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (answer.length > 64 * 1024) (stream.destroy(), sock.destroy());
        return;
      }
      stream.off('data', onAnswer);
      sock.write(answer); // the target's answer, and whatever followed it, as it came
      if (/^HTTP\/1\.[01] 101 /.test(answer.subarray(0, end).toString('latin1'))) {
        if (head.length) stream.write(head);
        pipeline(sock, stream, sock, () => {});
        sock.resume();
        return;
      }
      // Refused: the rest of its answer goes back, the client's bytes never go on.
      stream.pipe(sock);
      setTimeout(() => (stream.destroy(), sock.destroy()), 10_000).unref();
    };
    stream.on('data', onAnswer);
  }

  /** `node` stopped answering: no request waits on a kept-alive stream through it. */
  dropNode(node: string) {
    this.#pool.dropNode(node);
  }

  async close(): Promise<void> {
    this.#tlsListener?.close();
    this.#plainListener?.close();
    this.#plain.close();
    this.#secure.close();
    this.#plain.closeAllConnections();
    this.#secure.closeAllConnections();
    this.#pool.close();
  }
}
