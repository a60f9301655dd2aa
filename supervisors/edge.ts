// The node's data plane, in two parts started in order: the authoritative DNS over the zone
// mirror (always on the node's main thread: it is fast enough there, and actors read its
// zones), then the ingress (the route mirror, TCP/UDP/HTTP(S) listeners, certificates,
// access, the tunnels' HTTP/2 sessions), on the main thread or, with `ingress.thread:
// worker`, on a thread of its own (supervisors/edge-thread.ts, docs/data-plane-worker.md).
// Everything here answers from memory; nothing waits on an actor.
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import type { ClusterConfig } from '../cluster.config.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import { loadSpliceRelay } from '../core/splice-relay.ts';
import { LocalTunnels, type TunnelControl } from '../gateways/connector/tunnel-control.ts';
import { TunnelRegistry } from '../gateways/connector/tunnels.ts';
import { DnsServer } from '../gateways/dns/server.ts';
import { ZoneTable } from '../gateways/dns/zones.ts';
import { CertificateStore, type CertificateSource } from '../gateways/ingress/certs.ts';
import { acceptForwarded } from '../gateways/ingress/forwarded.ts';
import { HttpIngress, type IngressAccess } from '../gateways/ingress/http.ts';
import { issuedCertificates } from '../gateways/ingress/issued-certs.ts';
import { RouteTable, type RouteChange } from '../gateways/ingress/routes.ts';
import { TcpIngress } from '../gateways/ingress/tcp.ts';
import { UdpIngress } from '../gateways/ingress/udp.ts';
import type { Placement } from '../gateways/ingress/upstream.ts';
import type { OidcSignIn } from '../gateways/identity/oidc.ts';
import type { PeerLink } from '../gateways/peer/link.ts';
import { listenProblems } from '../persistence/actor-stores.ts';
import type { DatabasePool } from '../persistence/db.ts';
import type { Sealer } from '../persistence/sealed.ts';
import type { Valkey } from '../persistence/valkey.ts';
import { startAccess } from './access.ts';
import { dnsExclusions } from './dns-exclusion.ts';
import { startEdgeThread } from './edge-thread.ts';
import type { Membership } from './membership.ts';
import { certificateExpiryGauge, createDnsMetrics, createIngressMetrics, type ClusterMetrics } from './metrics.ts';
import type { Suspicion } from './suspicion.ts';

/** Where the ingress sends a connection whose site's tunnel is on another node. */
export type TrafficView = Omit<Placement, 'nodeId'>;

/**
 * What the ingress reads and tells beyond its sockets. On the main thread: Valkey and
 * PostgreSQL (`connectedSources`). On the ingress thread: the main thread, by messages
 * (supervisors/edge-worker.ts), so that thread's isolate holds no client sockets but the data
 * plane's (docs/data-plane-worker.md: such sockets cost the data plane 4-5 us per request).
 */
export interface IngressSources {
  routes: RouteTable;
  /** Issued certificates, by hostname; `hostnames` are loaded at start. */
  certificates: CertificateSource & { hostnames(): Promise<string[]> };
  /** Registers `reload` for every hostname whose certificate changes. */
  onCertificate(reload: (hostname: string) => void): Promise<void>;
  /** A resource's listener problem (a port it cannot have), or null once it has it. */
  report(resourceId: string, problem: string | null): void;
  /** Access control once certificates are loaded; the revoked sessions known before it resolves. */
  access(certs: CertificateStore): Promise<IngressAccess & { changed(kind: string): void; stop(): Promise<void> }>;
  /** The issued certificates' expiry, for metrics (the main thread's alone: the gauge is registered once). */
  certificateExpiries?: () => Promise<Array<{ hostname: string; seconds: number }>>;
}

export interface IngressDeps {
  config: ClusterConfig;
  sources: IngressSources;
  tunnels: TunnelRegistry;
  traffic: TrafficView;
  registry: Registry;
  clock: Clock;
  logger: Logger;
}

export interface Ingress {
  routes: RouteTable;
  http: HttpIngress;
  /** A change of this kind was made (revoked sessions are read again). */
  changed(kind: string): void;
  /** A connection a peer forwarded here, for a site whose tunnel is here. */
  accept(stream: Duplex, resourceId: string, targetId: string): void;
  /** Listeners first (no new connections), then access, then the route mirror. */
  close(): Promise<void>;
}

/** The main thread's sources: the route mirror from Valkey, certificates and access from PostgreSQL. */
export async function connectedSources(d: { config: ClusterConfig; db: DatabasePool; valkey: Valkey; sealer: Sealer; oidc: OidcSignIn; registry: Registry; clock: Clock; logger: Logger }): Promise<IngressSources> {
  const { config, valkey, logger, clock } = d;
  const routes = new RouteTable({ valkey, logger, clock });
  const listen = listenProblems(valkey, config.nodeId);
  // Every route update re-checks the ports; only a change in a resource's problem is written.
  const reported = new Map<string, string | null>();
  // Issued certificates: every node decrypts and serves them; a wrong cluster key stops the
  // node here, loudly, instead of serving generated certificates in their place.
  const issued = issuedCertificates(d.db, d.sealer);
  await issued.checkKey();
  return {
    routes,
    certificates: issued,
    certificateExpiries: () => issued.expiries(),
    onCertificate: async (reload) => void (await valkey.subscribe('certs', ({ hostname }) => reload(hostname))),
    report(resourceId, problem) {
      if (reported.get(resourceId) === problem) return;
      reported.set(resourceId, problem);
      void listen.report(resourceId, problem).catch(() => reported.delete(resourceId));
    },
    async access(certs) {
      const access = await startAccess({ config, db: d.db, valkey, oidc: d.oidc, sealer: d.sealer, certs, routes, registry: d.registry, clock, logger });
      routes.on('updated', (changes: RouteChange[]) => access.warm(changes));
      return access;
    },
  };
}

/**
 * A certificate store from `sources`, kept current. `preload`: every issued certificate's
 * context made now (the ingress's); otherwise on first use (the main thread's beside an
 * ingress thread, which serves the portal alone).
 */
export async function loadCertificates(sources: IngressSources, logger: Logger, preload = true): Promise<CertificateStore> {
  const certs = new CertificateStore(sources.certificates);
  if (preload) for (const hostname of await sources.certificates.hostnames()) await certs.reload(hostname).catch((err) => logger.error({ hostname, err: (err as Error).message }, 'cannot load a certificate'));
  await sources.onCertificate((hostname) => void certs.reload(hostname).then(
    (ok) => logger.info({ hostname, loaded: ok }, 'certificate reloaded'),
    (err) => logger.error({ hostname, err: (err as Error).message }, 'cannot load a certificate'),
  ));
  return certs;
}

/** The ingress, listening once this resolves. Runs on the main thread or in the edge worker. */
export async function startIngress(d: IngressDeps): Promise<Ingress> {
  const { config, sources, logger, clock, tunnels } = d;
  const { routes } = sources;
  const placement: Placement = { nodeId: config.nodeId, ...d.traffic };
  const common = { routes, tunnels, placement, bindHost: config.ingress.https.host, logger };
  const report = (resourceId: string, problem: string | null) => sources.report(resourceId, problem);
  const tcp = new TcpIngress({ ...common, ports: config.ingress.resourcePorts, report });
  const splice = loadSpliceRelay();
  if ('error' in splice) logger.warn({ reason: splice.error }, 'the splice relay is not available: raw TCP streams are copied through this process, at about half the bulk throughput');
  const udpDrops = new Counter({ name: 'cluster_udp_dropped_total', help: 'UDP datagrams dropped by this node\'s ingress, by reason (session limits, rate, backpressure)', labelNames: ['reason'], registers: [d.registry] });
  const udp = new UdpIngress({ ...common, ports: config.ingress.resourcePorts, report, clock, onDrop: (reason) => udpDrops.inc({ reason }) });
  const certs = await loadCertificates(sources, logger);
  // Before the ingress serves anything: the revoked sessions must be known first.
  const access = await sources.access(certs);
  const metrics = createIngressMetrics(d.registry, { tunnels: () => tunnels.counts(), tunnelStreams: () => tunnels.opened, certificateExpiries: sources.certificateExpiries });
  const http = new HttpIngress({ ...common, certs, http: config.ingress.http, https: config.ingress.https, helloTimeoutMs: config.ingress.helloTimeout, maxConnectionsPerSource: config.ingress.maxConnectionsPerSource, proxyProtocolFrom: config.ingress.proxyProtocolFrom, access, onRequest: metrics.onRequest });
  // The node's own listeners first: a resource can never hold a port the node needs (the
  // configured range excludes them too). Route updates open resource listeners, so the
  // route mirror starts after them.
  await http.listen();
  await routes.start();
  tcp.sync();
  udp.sync();
  return {
    routes,
    http,
    changed: (kind) => access.changed(kind),
    accept: (stream, resourceId, targetId) => acceptForwarded(stream, resourceId, targetId, { routes, tunnels, logger, terminateTls: (s, client) => http.terminateTls(s, client) }),
    async close() {
      tcp.close();
      udp.close();
      await http.close();
      await access.stop();
      await routes.stop();
    },
  };
}

export interface EdgeDeps {
  config: ClusterConfig;
  /** Where the config came from: the ingress thread loads it again. */
  configFile: string | undefined;
  db: DatabasePool;
  valkey: Valkey;
  sealer: Sealer;
  /** Sign-in through identity providers (shared with the admin API). */
  oidc: OidcSignIn;
  membership: Membership;
  suspicion: Pick<Suspicion, 'isSuspected' | 'suspected' | 'on'>;
  peer: PeerLink;
  metrics: ClusterMetrics;
  clock: Clock;
  logger: Logger;
}

export interface Edge {
  /** The route table as this node mirrors it (on the main thread, whichever thread the ingress is on). */
  routes: RouteTable;
  zones: ZoneTable;
  /** A change of this kind was made (revoked sessions are read again). */
  changed(kind: string): void;
  /** A connection a peer forwarded here. */
  accept(stream: Duplex, resourceId: string, targetId: string): void;
  /** Ingress first (no new connections), then DNS, then the mirrors. */
  close(): Promise<void>;
}

/** The edge before it starts: the tunnels it will carry are set up from the start (the connector control channel needs them before the listeners open). */
export interface PreparedEdge {
  tunnels: TunnelControl;
  /** Where the ingress runs. */
  thread: 'worker' | 'main';
  start(): Promise<Edge>;
}

export function prepareEdge(d: EdgeDeps): PreparedEdge {
  const { config, valkey, logger, clock } = d;
  // The traffic view: while fenced, the peers that were live (they took this node's sites over).
  const traffic: TrafficView = {
    isLive: (node) => d.membership.trafficMember(node) !== undefined,
    isSuspected: (node) => d.suspicion.isSuspected(node),
    forward: (node, resourceId, targetId, header, timeoutMs) => {
      const member = d.membership.trafficMember(node);
      if (!member) return Promise.reject(new Error(`node ${node} is not live`));
      return d.peer.openForward(member, resourceId, targetId, header, timeoutMs);
    },
  };
  const native = loadSpliceRelay();
  const inWorker = config.ingress.thread === 'worker' && 'module' in native;
  if (config.ingress.thread === 'worker' && 'error' in native) logger.error({ reason: native.error }, 'ingress.thread is "worker" but the native module is not built (it moves connections between threads): the ingress runs on the main thread');
  const worker = inWorker ? startEdgeThread({ config, configFile: d.configFile, traffic, membership: d.membership, suspicion: d.suspicion, registry: d.metrics.registry, logger }) : undefined;
  // On this thread's ingress (no worker): the tunnels' sessions are made here.
  const registry = worker ? undefined : new TunnelRegistry();
  const tunnels = worker?.tunnels ?? new LocalTunnels(registry!, logger);

  /** DNS, then the ingress: the node's own listeners before any resource's (the route mirror opens those). */
  const start = async (): Promise<Edge> => {
    const zones = new ZoneTable({ valkey, logger, clock });
    const dnsMetrics = createDnsMetrics(d.metrics.registry, { zoneSnapshotAgeMs: () => zones.age });
    await zones.start();
    // DNS leaves out the addresses of nodes this node suspects (and names them again once heard),
    // and, while this node is fenced (its sites and zones moved on without it), its own.
    const excludeSuspected = () => {
      const { excluded, answering } = dnsExclusions({ self: config.nodeId, members: d.membership.forTraffic(), suspected: d.suspicion.suspected, healthy: d.membership.healthy, renewing: (id) => d.membership.renewingLease(id) });
      zones.exclude(excluded, answering);
    };
    d.suspicion.on('change', excludeSuspected);
    d.membership.on('view', excludeSuspected);
    const dns = new DnsServer({ zones, host: config.dns.bind.host, port: config.dns.bind.port, rateLimit: config.dns.rateLimit, clock, logger, queryCounter: dnsMetrics.queryCounter });
    await dns.listen();
    const closeDns = async () => {
      await dns.close();
      await zones.stop();
    };
    const sources = await connectedSources({ config, db: d.db, valkey, sealer: d.sealer, oidc: d.oidc, registry: d.metrics.registry, clock, logger });
    if (worker) {
      // The ingress thread's sources: the route mirror, the certificates, access control and
      // the portal stay here, and the thread asks (edge-thread.ts).
      const { routes } = sources;
      const certs = await loadCertificates(sources, logger, false);
      await sources.onCertificate((hostname) => worker.certificateChanged(hostname));
      const access = await sources.access(certs);
      certificateExpiryGauge(d.metrics.registry, sources.certificateExpiries!);
      // Serves the portal's TLS connections the thread hands back; it routes nothing else (a
      // request for another hostname on such a connection finds no target here: 503).
      const portal = new HttpIngress({ routes, tunnels: new TunnelRegistry(), placement: { nodeId: config.nodeId, isLive: () => false, isSuspected: () => false, forward: () => Promise.reject(new Error("the portal serves no resource")) }, logger, certs, http: config.ingress.http, https: config.ingress.https, helloTimeoutMs: config.ingress.helloTimeout, maxConnectionsPerSource: config.ingress.maxConnectionsPerSource, access });
      await routes.start();
      worker.provide({ routes, certificates: sources.certificates, access, report: (id, problem) => sources.report(id, problem), portal });
      await worker.started();
      return {
        routes,
        zones,
        changed: (kind) => {
          access.changed(kind);
          worker.changed(kind);
        },
        accept: (stream, resourceId, targetId) => worker.accept(stream, resourceId, targetId),
        async close() {
          await worker.close();
          await portal.close();
          await access.stop();
          await closeDns();
          await routes.stop();
        },
      };
    }
    const ingress = await startIngress({ config, sources, tunnels: registry!, traffic, registry: d.metrics.registry, clock, logger });
    d.suspicion.on('suspect', (node: string) => ingress.http.dropNode(node));
    return {
      routes: ingress.routes,
      zones,
      changed: (kind) => ingress.changed(kind),
      accept: (stream, resourceId, targetId) => ingress.accept(stream, resourceId, targetId),
      async close() {
        await ingress.close();
        await closeDns();
      },
    };
  };
  return { tunnels, thread: worker ? 'worker' : 'main', start };
}
