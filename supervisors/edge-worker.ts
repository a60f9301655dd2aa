// The ingress worker thread (docs/data-plane-worker.md): the node's ingress (supervisors/edge.ts
// startIngress) in a V8 isolate of its own, beside the actors and the control plane on the
// main thread. It loads the node's config as the main thread did, opens its own Valkey
// connection and a small PostgreSQL pool (the route and certificate mirrors rebuild from
// them), and holds the tunnels' HTTP/2 sessions over the connections the main thread hands
// it. Started by supervisors/edge-thread.ts through the node's entry (bin/cluster.ts).
import { parentPort } from 'node:worker_threads';
import { loadConfig, redactConfig } from '../cluster.config.ts';
import { systemClock } from '../core/clock.ts';
import { ClusterError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { adopt, socketPair } from '../core/socket-handover.ts';
import { setTunnel } from '../gateways/connector/tunnel-control.ts';
import { RawOffers } from '../gateways/connector/raw-offers.ts';
import { TunnelRegistry } from '../gateways/connector/tunnels.ts';
import { OidcSignIn } from '../gateways/identity/oidc.ts';
import { createDb } from '../persistence/db.ts';
import { Sealer } from '../persistence/sealed.ts';
import { Valkey } from '../persistence/valkey.ts';
import type { EdgeWorkerData, FromWorker, ToWorker } from '../protocol/edge-thread.ts';
import { Registry } from 'prom-client';
import { startIngress, type Ingress, type TrafficView } from './edge.ts';
import { fromThreadError, threadError } from './edge-thread.ts';

/** PostgreSQL connections of the worker: access decisions' log, sessions, certificates (the main thread keeps its own pool). */
const POOL_SIZE = 4;

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
  const valkey = new Valkey({ url: config.valkey.url, clusterName: config.clusterName, connectTimeout: config.valkey.connectTimeout, commandTimeout: config.valkey.commandTimeout, sentinels: config.valkey.sentinels, masterName: config.valkey.masterName, logger });
  let stop = () => valkey.close().catch(() => {});
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
  valkey.connect();
  try {
    const db = await createDb({ url: config.postgres.url, poolSize: Math.min(POOL_SIZE, config.postgres.poolSize), connectTimeout: config.postgres.connectTimeout, statementTimeout: config.postgres.statementTimeout, idleInTransactionTimeout: config.postgres.idleInTransactionTimeout, logger });
    const sealer = new Sealer(config.encryptionKey);
    const oidc = new OidcSignIn({ db, valkey, sealer, clock, logger, nodeId: config.nodeId });
    const started = await startIngress({ config, db, valkey, sealer, oidc, tunnels, traffic, registry, clock, logger });
    stop = async () => {
      await started.close().catch((err) => logger.warn({ err: (err as Error).message }, 'closing the ingress failed'));
      await valkey.close().catch(() => {});
      await db.end().catch(() => {});
    };
    ingress = started;
    for (const msg of waiting.splice(0)) ingressMessage(started, msg);
    post({ type: 'started' });
  } catch (err) {
    post({ type: 'started', error: threadError(err) });
  }
}
