// The node's data plane, built and started in order: the route mirror, TCP/UDP/HTTP(S)
// ingress with the issued certificates, and the authoritative DNS over the zone mirror.
// Everything here answers from memory; nothing waits on an actor.
import { Counter } from 'prom-client';
import type { ClusterConfig } from '../cluster.config.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import type { TunnelRegistry } from '../gateways/connector/tunnels.ts';
import { DnsServer } from '../gateways/dns/server.ts';
import { ZoneTable } from '../gateways/dns/zones.ts';
import { CertificateStore } from '../gateways/ingress/certs.ts';
import { HttpIngress } from '../gateways/ingress/http.ts';
import { issuedCertificates } from '../gateways/ingress/issued-certs.ts';
import { RouteTable, type RouteChange } from '../gateways/ingress/routes.ts';
import { TcpIngress } from '../gateways/ingress/tcp.ts';
import { loadSpliceRelay } from '../core/splice-relay.ts';
import { UdpIngress } from '../gateways/ingress/udp.ts';
import type { Placement } from '../gateways/ingress/upstream.ts';
import type { PeerLink } from '../gateways/peer/link.ts';
import { listenProblems } from '../persistence/actor-stores.ts';
import type { DatabasePool } from '../persistence/db.ts';
import type { Sealer } from '../persistence/sealed.ts';
import type { OidcSignIn } from '../gateways/identity/oidc.ts';
import type { Valkey } from '../persistence/valkey.ts';
import { startAccess } from './access.ts';
import { dnsExclusions } from './dns-exclusion.ts';
import type { Membership } from './membership.ts';
import type { Suspicion } from './suspicion.ts';
import { createEdgeMetrics, type ClusterMetrics } from './metrics.ts';

export interface EdgeDeps {
  config: ClusterConfig;
  db: DatabasePool;
  valkey: Valkey;
  sealer: Sealer;
  /** Sign-in through identity providers (shared with the admin API). */
  oidc: OidcSignIn;
  tunnels: TunnelRegistry;
  membership: Membership;
  suspicion: Pick<Suspicion, 'isSuspected' | 'suspected' | 'on'>;
  peer: PeerLink;
  metrics: ClusterMetrics;
  clock: Clock;
  logger: Logger;
}

export interface Edge {
  routes: RouteTable;
  zones: ZoneTable;
  http: HttpIngress;
  /** A change of this kind was made (revoked sessions are read again). */
  changed(kind: string): void;
  /** Ingress first (no new connections), then DNS, then the mirrors. */
  close(): Promise<void>;
}

export async function startEdge(d: EdgeDeps): Promise<Edge> {
  const { config, valkey, logger, clock } = d;
  const routes = new RouteTable({ valkey, logger, clock });
  const zones = new ZoneTable({ valkey, logger, clock });
  // Where a connection goes when its target's tunnel is on another node: the peer link.
  const placement: Placement = {
    nodeId: config.nodeId,
    // The traffic view: while fenced, the peers that were live (they took this node's sites over).
    isLive: (node) => d.membership.trafficMember(node) !== undefined,
    isSuspected: (node) => d.suspicion.isSuspected(node),
    forward: (node, resourceId, targetId, header, timeoutMs) => {
      const member = d.membership.trafficMember(node);
      if (!member) return Promise.reject(new Error(`node ${node} is not live`));
      return d.peer.openForward(member, resourceId, targetId, header, timeoutMs);
    },
  };
  const common = { routes, tunnels: d.tunnels, placement, bindHost: config.ingress.https.host, logger };
  const listen = listenProblems(valkey, config.nodeId);
  // Every route update re-checks the ports; only a change in a resource's problem is written.
  const reported = new Map<string, string | null>();
  const report = (resourceId: string, problem: string | null) => {
    if (reported.get(resourceId) === problem) return;
    reported.set(resourceId, problem);
    void listen.report(resourceId, problem).catch(() => reported.delete(resourceId));
  };
  const tcp = new TcpIngress({ ...common, ports: config.ingress.resourcePorts, report });
  const splice = loadSpliceRelay();
  if ('error' in splice) logger.warn({ reason: splice.error }, 'the splice relay is not available: raw TCP streams are copied through this process, at about half the bulk throughput');
  const udpDrops = new Counter({ name: 'cluster_udp_dropped_total', help: 'UDP datagrams dropped by this node\'s ingress, by reason (session limits, rate, backpressure)', labelNames: ['reason'], registers: [d.metrics.registry] });
  const udp = new UdpIngress({ ...common, ports: config.ingress.resourcePorts, report, clock, onDrop: (reason) => udpDrops.inc({ reason }) });
  // Issued certificates: every node decrypts and serves them; a wrong cluster key stops the
  // node here, loudly, instead of serving generated certificates in their place.
  const issued = issuedCertificates(d.db, d.sealer);
  await issued.checkKey();
  const certs = new CertificateStore(issued);
  for (const hostname of await issued.hostnames()) await certs.reload(hostname).catch((err) => logger.error({ hostname, err: (err as Error).message }, 'cannot load a certificate'));
  await valkey.subscribe('certs', ({ hostname }) => void certs.reload(hostname).then(
    (ok) => logger.info({ hostname, loaded: ok }, 'certificate reloaded'),
    (err) => logger.error({ hostname, err: (err as Error).message }, 'cannot load a certificate'),
  ));
  // Before the ingress serves anything: the revoked sessions must be known first.
  const access = await startAccess({ config, db: d.db, valkey, oidc: d.oidc, sealer: d.sealer, certs, routes, metrics: d.metrics, clock, logger });
  routes.on('updated', (changes: RouteChange[]) => access.warm(changes));
  const metrics = createEdgeMetrics(d.metrics.registry, { tunnels: () => d.tunnels.counts(), tunnelStreams: () => d.tunnels.opened, certificateExpiries: () => issued.expiries(), zoneSnapshotAgeMs: () => zones.age });
  const http = new HttpIngress({ ...common, certs, http: config.ingress.http, https: config.ingress.https, helloTimeoutMs: config.ingress.helloTimeout, maxConnectionsPerSource: config.ingress.maxConnectionsPerSource, proxyProtocolFrom: config.ingress.proxyProtocolFrom, access, onRequest: metrics.onRequest });
  // The node's own listeners first: a resource can never hold a port the node needs (the
  // configured range excludes them too). Route updates open resource listeners, so the
  // route mirror starts after them.
  await zones.start();
  // DNS leaves out the addresses of nodes this node suspects (and names them again once heard),
  // and, while this node is fenced (its sites and zones moved on without it), its own.
  const excludeSuspected = () => {
    const { excluded, answering } = dnsExclusions({ self: config.nodeId, members: d.membership.forTraffic(), suspected: d.suspicion.suspected, healthy: d.membership.healthy, renewing: (id) => d.membership.renewingLease(id) });
    zones.exclude(excluded, answering);
  };
  d.suspicion.on('change', excludeSuspected);
  d.suspicion.on('suspect', (node: string) => http.dropNode(node));
  d.membership.on('view', excludeSuspected);
  await http.listen();
  const dns = new DnsServer({ zones, host: config.dns.bind.host, port: config.dns.bind.port, rateLimit: config.dns.rateLimit, clock, logger, queryCounter: metrics.queryCounter });
  await dns.listen();
  await routes.start();
  tcp.sync();
  udp.sync();
  return {
    routes,
    zones,
    http,
    changed: (kind) => access.changed(kind),
    async close() {
      tcp.close();
      udp.close();
      await http.close();
      await access.stop();
      await dns.close();
      await zones.stop();
      await routes.stop();
    },
  };
}
