// The main thread's side of the ingress worker (docs/data-plane-worker.md): starts the worker
// (supervisors/edge-worker.ts, loaded from the same entry as the node), gives it the tunnels'
// connections and the peers' forwarded connections, opens the forwards it asks for, keeps it
// told of the traffic view, and merges its metrics into the node's. A worker that fails or
// exits on its own ends the node: a node whose actors claim sites it cannot serve is worse
// than one that restarts (its sites move to the other nodes meanwhile).
import { fileURLToPath } from 'node:url';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { redactConfig, type ClusterConfig } from '../cluster.config.ts';
import { ClusterError, ERROR_CODES, isClusterError, type ErrorCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { adopt, moveOrRelay, relay, type HandedSocket } from '../core/socket-handover.ts';
import type { TunnelControl, TunnelLink } from '../gateways/connector/tunnel-control.ts';
import type { EdgeWorkerData, FromWorker, ThreadError, ToWorker, WorkerQuestion } from '../protocol/edge-thread.ts';
import type { RequestHead } from '../gateways/access/guard.ts';
import type { CertificateSource } from '../gateways/ingress/certs.ts';
import type { HttpIngress, IngressAccess } from '../gateways/ingress/http.ts';
import type { RouteChange, RouteTable } from '../gateways/ingress/routes.ts';
import { RAW_KEY_HEADER } from '../protocol/tunnel-framing.ts';
import type { TrafficView } from './edge.ts';
import type { Membership } from './membership.ts';
import type { NodeRegistry } from './metrics.ts';
import type { Suspicion } from './suspicion.ts';

/** The node's entry point: the worker runs it too, and it starts the worker's part (bin/cluster.ts). */
const ENTRY = fileURLToPath(new URL('../bin/cluster.mjs', import.meta.url));

export function threadError(err: unknown): ThreadError {
  return isClusterError(err) ? { code: err.code, message: err.message, fields: err.fields } : { message: (err as Error)?.message ?? String(err) };
}

/** The error as it was on the other thread: the same ClusterError where it was one. */
export function fromThreadError(e: ThreadError): Error {
  return e.code && e.code in ERROR_CODES ? new ClusterError(e.code as ErrorCode, e.message, e.fields as never) : new Error(e.message);
}

interface Mirrored {
  sessionId: string;
  standby: boolean;
  lost: (why: string | undefined) => void;
  frames: (() => Duplex) | undefined;
  /** The worker said its session or connection ended. */
  dead: boolean;
}

/**
 * The tunnels as the control channel sees them, kept in the worker. Decisions the control
 * channel needs at once (a standby refused, a promotion without a working tunnel) are made
 * on a mirror of the worker's registry: both see the same operations in the same order.
 */
class ThreadTunnels implements TunnelControl {
  readonly #sessions = new Map<string, Mirrored>();
  readonly #pending = new Map<string, string>();
  readonly #retiring = new Map<number, () => void>();
  #ids = 0;

  constructor(readonly post: (msg: ToWorker) => void, readonly log: Logger) {}

  expect(siteId: string, sessionId: string) {
    this.#pending.set(siteId, sessionId);
    this.post({ type: 'expect', siteId, sessionId });
  }

  set(siteId: string, sessionId: string, link: TunnelLink, standby: boolean, lost: (why: string | undefined) => void, rawStreams: boolean): boolean {
    const old = this.#sessions.get(siteId);
    if (standby && old && !old.standby && old.sessionId !== sessionId) return false;
    const pending = this.#pending.get(siteId);
    if (standby && pending !== undefined && pending !== sessionId) return false;
    let handed: HandedSocket | 'frames' = 'frames';
    if ('socket' in link) {
      const moved = moveOrRelay(link.socket);
      if (!moved) return false; // descriptors exhausted: the connector registers again
      if (!link.socket.destroyed) this.log.warn({ siteId }, 'a tunnel connection could not be handed to the ingress thread (TLS, or a write still queued): its bytes are relayed through the main thread');
      handed = moved;
    }
    this.#sessions.set(siteId, { sessionId, standby, lost, frames: 'frames' in link ? link.frames : undefined, dead: false });
    if (pending === sessionId) this.#pending.delete(siteId);
    this.post({ type: 'set', siteId, sessionId, standby, rawStreams, link: handed });
    return true;
  }

  promote(siteId: string, sessionId: string): boolean {
    const s = this.#sessions.get(siteId);
    if (s?.sessionId !== sessionId) return false;
    s.standby = false;
    this.post({ type: 'promote', siteId, sessionId });
    return !s.dead;
  }

  delete(siteId: string, sessionId: string) {
    if (this.#pending.get(siteId) === sessionId) this.#pending.delete(siteId);
    if (this.#sessions.get(siteId)?.sessionId === sessionId) this.#sessions.delete(siteId);
    this.post({ type: 'delete', siteId, sessionId });
  }

  retire(siteId: string, sessionId: string, done: () => void) {
    if (this.#sessions.get(siteId)?.sessionId !== sessionId) return done();
    this.#sessions.delete(siteId);
    const id = ++this.#ids;
    this.#retiring.set(id, done);
    this.post({ type: 'retire', id, siteId, sessionId });
  }

  acceptRaw(req: IncomingMessage, socket: Socket, head: Buffer): boolean {
    const key = req.headers[RAW_KEY_HEADER];
    if (typeof key !== 'string') return false;
    const moved = moveOrRelay(socket);
    if (!moved) return false;
    this.post({ type: 'raw', key, connection: { fd: moved.fd, head: head.length > 0 ? Buffer.concat([head, moved.head]) : moved.head } });
    return true;
  }

  /** The worker's news of a tunnel. */
  lost(siteId: string, sessionId: string, why: string | undefined) {
    const s = this.#sessions.get(siteId);
    if (s?.sessionId !== sessionId) return;
    s.dead = true;
    s.lost(why);
  }

  frames(siteId: string, sessionId: string, end: HandedSocket) {
    const socket = adopt(end, { allowHalfOpen: true });
    const s = this.#sessions.get(siteId);
    if (s?.sessionId !== sessionId || !s.frames) return socket.destroy(); // replaced meanwhile
    relay(s.frames(), socket);
  }

  retired(id: number) {
    const done = this.#retiring.get(id);
    this.#retiring.delete(id);
    done?.();
  }
}

/** What the main thread serves the ingress thread from (supervisors/edge.ts builds it once Valkey and PostgreSQL are up). */
export interface MainSide {
  routes: RouteTable;
  certificates: CertificateSource & { hostnames(): Promise<string[]> };
  access: Pick<IngressAccess, 'guard'>;
  report(resourceId: string, problem: string | null): void;
  /** Serves the portal's TLS connections handed back by the thread. */
  portal: Pick<HttpIngress, 'terminateTls'>;
}

/** The main thread's answer to one of the thread's questions. */
async function answer(side: MainSide, q: WorkerQuestion): Promise<unknown> {
  switch (q.what) {
    case 'route-snapshots':
      return [...side.routes.snapshots()];
    case 'certificate':
      return (await side.certificates.get(q.hostname)) ?? null;
    case 'certificate-hostnames':
      return side.certificates.hostnames();
    case 'check': {
      const route = side.routes.byId(q.resourceId);
      if (!route) throw new ClusterError('CLUSTER_ERR_ACCESS_DENIED', 'the resource is not known on this node yet', { resourceId: q.resourceId, reason: 'unknown resource' });
      return side.access.guard.check(q.head as RequestHead, route, q.proto, q.client);
    }
  }
}

export interface EdgeThread {
  tunnels: TunnelControl;
  /** The main thread's side is ready: the thread's questions are answered from here on (they wait until then). */
  provide(side: MainSide): void;
  /** An issued certificate changed. */
  certificateChanged(hostname: string): void;
  /** Resolves once the worker's listeners are open; rejects with its start's failure. */
  started(): Promise<void>;
  changed(kind: string): void;
  accept(stream: Duplex, resourceId: string, targetId: string): void;
  /** Its listeners close, its connections end, then the thread. */
  close(): Promise<void>;
}

export function startEdgeThread(d: { config: ClusterConfig; configFile: string | undefined; traffic: TrafficView; membership: Membership; suspicion: Pick<Suspicion, 'suspected' | 'on'>; registry: NodeRegistry; logger: Logger }): EdgeThread {
  const log = d.logger.child({ component: 'ingress-thread' });
  const workerData: EdgeWorkerData = { edgeWorker: { configFile: d.configFile, expect: JSON.stringify(redactConfig(d.config)) } };
  const worker = new Worker(ENTRY, { workerData });
  let closing = false;
  const post = (msg: ToWorker) => worker.postMessage(msg);
  const tunnels = new ThreadTunnels(post, log);
  const replies = new Map<number, (msg: FromWorker) => void>();
  let ids = 0;
  /** A question to the worker; undefined if it does not answer within `timeoutMs`. */
  const ask = (msg: (id: number) => ToWorker, timeoutMs: number) => new Promise<FromWorker | undefined>((resolve) => {
    const id = ++ids;
    const timer = setTimeout(() => {
      replies.delete(id);
      resolve(undefined);
    }, timeoutMs);
    replies.set(id, (answer) => {
      clearTimeout(timer);
      resolve(answer);
    });
    post(msg(id));
  });
  let start!: { resolve: () => void; reject: (err: Error) => void };
  const started = new Promise<void>((resolve, reject) => (start = { resolve, reject }));
  started.catch(() => {});
  const fatal = (what: string, err?: unknown) => {
    if (closing) return;
    log.fatal({ code: 'CLUSTER_ERR_NODE_INGRESS_THREAD', err: err === undefined ? undefined : threadError(err) }, `${what}: the node stops (its sites move to the other nodes)`);
    process.exit(1);
  };
  worker.on('error', (err) => fatal('the ingress thread failed', err));
  worker.on('exit', (code) => {
    start.reject(new ClusterError('CLUSTER_ERR_NODE_INGRESS_THREAD', `the ingress thread exited (${code}) before it started`, { exitCode: code }));
    fatal(`the ingress thread exited (${code})`);
  });
  worker.on('message', (msg: FromWorker) => {
    switch (msg.type) {
      case 'started':
        return msg.error ? start.reject(fromThreadError(msg.error)) : start.resolve();
      case 'lost':
        return tunnels.lost(msg.siteId, msg.sessionId, msg.why);
      case 'frames':
        return tunnels.frames(msg.siteId, msg.sessionId, msg.end);
      case 'forward': {
        const end = adopt(msg.end, { allowHalfOpen: true });
        return void d.traffic.forward(msg.node, msg.resourceId, msg.targetId, Buffer.from(msg.header), msg.timeoutMs).then(
          (stream) => {
            relay(stream, end);
            post({ type: 'forward-result', id: msg.id });
          },
          (err) => {
            end.destroy();
            post({ type: 'forward-result', id: msg.id, error: threadError(err) });
          },
        );
      }
      case 'retired':
        return tunnels.retired(msg.id);
      case 'ask': {
        const { id } = msg;
        return void sideReady.then((side) => answer(side, msg)).then(
          (value) => post({ type: 'answer', id, value }),
          (err) => post({ type: 'answer', id, error: threadError(err) }),
        );
      }
      case 'problem':
        return void sideReady.then((side) => side.report(msg.resourceId, msg.problem));
      case 'portal': {
        const socket = adopt(msg.connection);
        socket.on('error', () => {});
        return void sideReady.then((side) => side.portal.terminateTls(socket, msg.client));
      }
      case 'metrics':
      case 'closed': {
        const reply = replies.get(msg.id);
        replies.delete(msg.id);
        return reply?.(msg);
      }
    }
  });
  let provided!: (side: MainSide) => void;
  const sideReady = new Promise<MainSide>((resolve) => (provided = resolve));
  // The traffic view, now and on every change.
  const traffic = () => post({ type: 'traffic', live: d.membership.forTraffic().map((m) => m.id), suspected: [...d.suspicion.suspected] });
  traffic();
  d.membership.on('view', traffic);
  d.suspicion.on('change', traffic);
  d.suspicion.on('suspect', (node: string) => post({ type: 'suspect', node }));
  // A scrape waits a moment for the worker's part; a worker that does not answer shows none.
  d.registry.addSource(async () => ((await ask((id) => ({ type: 'metrics', id }), 2000)) as { text: string } | undefined)?.text ?? '');
  return {
    tunnels,
    provide(side) {
      // Every snapshot the main thread's mirror takes in goes on to the thread's, as it comes.
      side.routes.on('updated', (changes: RouteChange[]) => {
        const snapshots = changes.map((c) => side.routes.snapshot((c.after ?? c.before)!.resourceId)).filter((x) => x !== undefined);
        if (snapshots.length) post({ type: 'route-snapshots', snapshots });
      });
      provided(side);
    },
    certificateChanged: (hostname) => post({ type: 'certificate-changed', hostname }),
    started: () => started,
    changed: (kind) => post({ type: 'changed', kind }),
    accept(stream, resourceId, targetId) {
      const moved = moveOrRelay(stream);
      if (!moved) return void stream.destroy();
      post({ type: 'forwarded', resourceId, targetId, connection: moved });
    },
    async close() {
      // Its connections get the shutdown's time to end; the thread goes after that in any case.
      if (!(await ask((id) => ({ type: 'close', id }), d.config.shutdown.timeout))) log.warn('the ingress thread did not close in time; stopping it');
      closing = true;
      await worker.terminate();
    },
  };
}
