// The ingress worker thread (docs/data-plane-worker.md): the node's ingress (supervisors/edge.ts
// startIngress) in a V8 isolate of its own, beside the actors and the control plane on the
// main thread. It loads the node's config as the main thread did and holds the tunnels'
// HTTP/2 sessions over the connections the main thread hands it. It opens no Valkey or
// PostgreSQL connection: routes, certificates and access decisions come from the main thread
// (the clients' sockets in this isolate would cost the data plane 4-5 us per request), and the
// portal's connections go back to it. Started by supervisors/edge-thread.ts through the
// node's entry (bin/cluster.ts).
import { parentPort } from 'node:worker_threads';
import { loadConfig, redactConfig } from '../cluster.config.ts';
import { systemClock } from '../core/clock.ts';
import { ClusterError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { adopt, handOver, socketPair } from '../core/socket-handover.ts';
import { setTunnel } from '../gateways/connector/tunnel-control.ts';
import { RawOffers } from '../gateways/connector/raw-offers.ts';
import { TunnelRegistry } from '../gateways/connector/tunnels.ts';
import type { Verdict } from '../gateways/access/guard.ts';
import { RouteTable, type Route } from '../gateways/ingress/routes.ts';
import type { Snapshot } from '../persistence/snapshots.ts';
import type { EdgeWorkerData, FromWorker, ToWorker, WorkerQuestion } from '../protocol/edge-thread.ts';
import { Registry } from 'prom-client';
import { startIngress, type Ingress, type IngressSources, type TrafficView } from './edge.ts';
import { fromThreadError, threadError } from './edge-thread.ts';

/** Longest the thread waits for the main thread's answer (a certificate, an access decision). */
const ASK_TIMEOUT_MS = 10_000;

export async function runEdgeWorker(data: EdgeWorkerData['edgeWorker']): Promise<void> {
  const port = parentPort!;
  const post = (msg: FromWorker) => port.postMessage(msg);
  const config = await loadConfig({ file: data.configFile });
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, base: { node: config.nodeId, thread: 'ingress' } });
  if (JSON.stringify(redactConfig(config)) !== data.expect) {
    post({ type: 'started', error: { code: 'CLUSTER_ERR_CONFIG_CHANGED', message: 'the config the ingress thread loaded differs from the one the node started with (was the file changed just now?)', fields: { source: data.configFile ?? 'environment' } } });
    return;
  }
  const clock = systemClock;
  const tunnels = new TunnelRegistry();
  const raw = new RawOffers();

  // The traffic view, as the main thread last told it; forwards are opened there (its peer links).
  let live = new Set<string>();
  let suspected = new Set<string>();
  let ids = 0;
  const forwards = new Map<number, (error: Error | undefined) => void>();
  const traffic: TrafficView = {
    isLive: (node) => live.has(node),
    isSuspected: (node) => suspected.has(node),
    forward: (node, resourceId, targetId, header, timeoutMs) => {
      const pair = socketPair();
      if (!pair) return Promise.reject(new ClusterError('CLUSTER_ERR_TUNNEL_DOWN', 'no socket pair for a forward', { siteId: '' }));
      const id = ++ids;
      return new Promise((resolve, reject) => {
        forwards.set(id, (error) => {
          if (!error) return resolve(pair.here);
          pair.here.destroy();
          reject(error);
        });
        post({ type: 'forward', id, node, resourceId, targetId, header, timeoutMs, end: pair.there });
      });
    },
  };

  // Questions to the main thread, and what it passes on unasked.
  const answers = new Map<number, (msg: Extract<ToWorker, { type: 'answer' }>) => void>();
  /** A question to the main thread; a main thread that does not answer in ASK_TIMEOUT_MS fails it (a request waits no longer than that for its access decision). */
  const ask = <T>(q: WorkerQuestion): Promise<T> => new Promise((resolve, reject) => {
    const id = ++ids;
    const timer = setTimeout(() => {
      answers.delete(id);
      reject(new Error(`the main thread did not answer (${q.what}) within ${ASK_TIMEOUT_MS} ms`));
    }, ASK_TIMEOUT_MS);
    answers.set(id, (a) => {
      clearTimeout(timer);
      if (a.error) reject(fromThreadError(a.error));
      else resolve(a.value as T);
    });
    post({ type: 'ask', id, ...q });
  });
  const routeListeners: Array<(s: Snapshot<Route>) => void> = [];
  const certificateListeners: Array<(hostname: string) => void> = [];
  let routesRead = false;
  const fedSources = (): IngressSources => ({
    // The main thread's mirror passes on every snapshot it takes in (in order, nothing lost
    // between threads): the whole table is read from it once, at start.
    routes: new RouteTable({
      source: {
        all: async () => (routesRead ? [] : ((routesRead = true), ask<Array<Snapshot<Route>>>({ what: 'route-snapshots' }))),
        onResubscribed: () => () => {},
        subscribe: async (handler) => {
          routeListeners.push(handler);
          return async () => void routeListeners.splice(routeListeners.indexOf(handler), 1);
        },
      },
      logger,
      clock,
    }),
    certificates: {
      get: async (hostname) => (await ask<{ cert: string; key: string } | null>({ what: 'certificate', hostname })) ?? undefined,
      hostnames: () => ask<string[]>({ what: 'certificate-hostnames' }),
    },
    onCertificate: async (reload) => void certificateListeners.push(reload),
    report: (resourceId, problem) => post({ type: 'problem', resourceId, problem }),
    access: async () => ({
      guard: { check: (req, route, proto, client) => ask<Verdict>({ what: 'check', head: { method: req.method, url: req.url, headers: { ...req.headers } }, resourceId: route.resourceId, proto, client }) },
      portal: config.access.portalHostname
        ? {
            hostname: config.access.portalHostname,
            // Only a request naming the portal inside another hostname's TLS connection gets here.
            handle: (_req, res) => void res.writeHead(421, { 'content-type': 'text/plain' }).end('misdirected request: connect to the portal by its own name\n'),
            elsewhere: (sock, head, client) => {
              const handed = handOver(sock);
              if (!handed) return void sock.destroy();
              post({ type: 'portal', connection: { fd: handed.fd, head: Buffer.concat([head, handed.head]) }, client });
            },
          }
        : undefined,
      changed: () => {},
      stop: async () => {},
    }),
  });

  // Messages are handled from the start (tunnels come as soon as connectors register); the
  // ingress's own ones wait for it.
  let ingress: Ingress | undefined;
  const waiting: ToWorker[] = [];
  const handle = (msg: ToWorker) => {
    switch (msg.type) {
      case 'expect':
        return tunnels.expect(msg.siteId, msg.sessionId);
      case 'set': {
        const { siteId, sessionId, link } = msg;
        const lost = (why: string | undefined) => post({ type: 'lost', siteId, sessionId, why });
        const frames = () => {
          const pair = socketPair();
          if (!pair) throw new Error('no socket pair for the tunnel\'s frames');
          post({ type: 'frames', siteId, sessionId, end: pair.there });
          return pair.here;
        };
        const ok = setTunnel(tunnels, siteId, sessionId, link === 'frames' ? { frames } : { socket: adopt(link) }, msg.standby, lost, msg.rawStreams ? () => raw.offer() : undefined, logger);
        // The main thread decided the same on its mirror; a difference would be a bug in the mirror.
        if (!ok) logger.error({ siteId }, 'the ingress thread refused a tunnel the main thread set; it is closed');
        if (!ok && link !== 'frames') adopt(link).destroy();
        return;
      }
      case 'promote':
        return void tunnels.promote(msg.siteId, msg.sessionId);
      case 'delete':
        return tunnels.delete(msg.siteId, msg.sessionId);
      case 'retire':
        return tunnels.retire(msg.siteId, msg.sessionId, () => post({ type: 'retired', id: msg.id }));
      case 'raw': {
        const socket = adopt(msg.connection);
        socket.on('error', () => {});
        if (!raw.accept(msg.key, socket, Buffer.alloc(0))) socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      case 'forward-result': {
        const done = forwards.get(msg.id);
        forwards.delete(msg.id);
        return done?.(msg.error ? fromThreadError(msg.error) : undefined);
      }
      case 'answer': {
        const reply = answers.get(msg.id);
        answers.delete(msg.id);
        return reply?.(msg);
      }
      case 'route-snapshots':
        for (const snap of msg.snapshots) for (const f of routeListeners) f(snap);
        return;
      case 'certificate-changed':
        for (const f of certificateListeners) f(msg.hostname);
        return;
      case 'traffic':
        live = new Set(msg.live);
        suspected = new Set(msg.suspected);
        return;
      case 'metrics':
        return void registry.metrics().then((text) => post({ type: 'metrics', id: msg.id, text }), () => post({ type: 'metrics', id: msg.id, text: '' }));
      case 'close':
        return void stop().finally(() => post({ type: 'closed', id: msg.id }));
      default:
        if (!ingress) return void waiting.push(msg);
        return ingressMessage(ingress, msg);
    }
  };
  const registry = new Registry();
  let stop = async () => {};
  const ingressMessage = (ing: Ingress, msg: ToWorker) => {
    switch (msg.type) {
      case 'forwarded':
        return ing.accept(adopt(msg.connection, { allowHalfOpen: true }), msg.resourceId, msg.targetId);
      case 'suspect':
        return ing.http.dropNode(msg.node);
      case 'changed':
        return ing.changed(msg.kind);
    }
  };
  port.on('message', handle);
  try {
    const started = await startIngress({ config, sources: fedSources(), tunnels, traffic, registry, clock, logger });
    stop = () => started.close().catch((err) => logger.warn({ err: (err as Error).message }, 'closing the ingress failed'));
    ingress = started;
    for (const msg of waiting.splice(0)) ingressMessage(started, msg);
    post({ type: 'started' });
  } catch (err) {
    post({ type: 'started', error: threadError(err) });
  }
}
