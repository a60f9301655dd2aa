// Prometheus metrics of one node (served at /metrics by the admin gateway).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RequestMetrics } from './request-metrics.ts';

/** Bounds of the proxied requests' latency histogram, in seconds. */
export const REQUEST_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** The node's registry, and metrics from elsewhere (the ingress thread's registry) added to what it serves. */
export class NodeRegistry extends Registry {
  readonly #sources: Array<() => Promise<string>> = [];

  addSource(text: () => Promise<string>) {
    this.#sources.push(text);
  }

  override async metrics(): Promise<string> {
    const parts = await Promise.all([super.metrics(), ...this.#sources.map((s) => s().catch(() => ''))]);
    return parts.filter((p) => p.length > 0).map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
  }
}

export interface ClusterMetrics {
  registry: NodeRegistry;
  claims: Counter<'kind'>;
  respawns: Counter<'kind'>;
  fencings: Counter<string>;
  leaseStalls: Counter<'outcome'>;
  registrationsRefused: Counter<'reason' | 'role'>;
  memberEvents: Counter<'event' | 'reason'>;
  fencingRejections: Counter<'kind'>;
  claimLatency: Histogram<string>;
  attachSeconds: Histogram<'how'>;
  attachClaimSeconds: Histogram<'how'>;
  suspicions: Counter<'peer'>;
}

export interface MetricSources {
  actorCount: (kind?: string) => number;
  kinds: () => string[];
  leaseHealthy: () => boolean;
  /** Milliseconds before this node must fence itself unless a renewal lands (0 without a lease). */
  leaseRemainingMs: () => number;
  /** Live members in this node's view (itself included). */
  liveNodes: () => number;
  /** Last result of the readiness probes (they run on an interval; scraping adds no load). */
  dependencies: () => { postgres: boolean; valkey: boolean };
  /** The live heap over V8's heap limit after the last full collection (core/heap-watch.ts). */
  heapLiveRatio: () => number;
}

export function createMetrics(opts: MetricSources): ClusterMetrics {
  const registry = new NodeRegistry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'cluster_actors',
    help: 'Actors running on this node, by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      for (const k of opts.kinds()) this.set({ kind: k }, opts.actorCount(k));
    },
  });
  new Gauge({
    name: 'cluster_lease_healthy',
    help: '1 while this node holds a current membership lease',
    registers: [registry],
    collect() {
      this.set(opts.leaseHealthy() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'cluster_lease_remaining_seconds',
    help: 'Time left before this node fences itself unless a lease renewal lands; near 0 means Valkey is slow or away',
    registers: [registry],
    collect() {
      this.set(opts.leaseRemainingMs() / 1000);
    },
  });
  new Gauge({
    name: 'cluster_live_nodes',
    help: 'Live nodes in this node\'s membership view, itself included',
    registers: [registry],
    collect() {
      this.set(opts.liveNodes());
    },
  });
  new Gauge({
    name: 'cluster_dependency_up',
    help: '1 while the last health probe of a dependency (postgres, valkey) succeeded',
    labelNames: ['dependency'],
    registers: [registry],
    collect() {
      for (const [dep, up] of Object.entries(opts.dependencies())) this.set({ dependency: dep }, up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'cluster_heap_live_ratio',
    help: 'Live V8 heap over its limit (--max-old-space-size) after the last full collection; near 1 the node spends its time collecting and then runs out of memory',
    registers: [registry],
    collect() {
      this.set(opts.heapLiveRatio());
    },
  });
  return {
    registry,
    claims: new Counter({ name: 'cluster_actor_claims_total', help: 'Actors claimed (spawned after winning ownership) by this node', labelNames: ['kind'], registers: [registry] }),
    respawns: new Counter({ name: 'cluster_actor_respawns_total', help: 'Claims of actors that had run before elsewhere (failover or handoff)', labelNames: ['kind'], registers: [registry] }),
    fencings: new Counter({ name: 'cluster_node_fencings_total', help: 'Times this node lost its lease and stopped all its actors', registers: [registry] }),
    leaseStalls: new Counter({ name: 'cluster_lease_stalls_total', help: 'Times this process stalled past its lease margin (GC, CPU starvation) and renewed before the lease could end: outcome confirmed (no fence) or fenced', labelNames: ['outcome'], registers: [registry] }),
    registrationsRefused: new Counter({ name: 'cluster_connector_registrations_refused_total', help: 'Connector registrations this node refused: with 503 CLUSTER_ERR_NODE_OVERLOADED, reason busy (as many in progress as it takes at once), lagging (its event loop ran over 1 s late) or standby-deferred (a standby while it ran over 250 ms late or took a promotion in the last 2 s); with 429 CLUSTER_ERR_CONNECTOR_REGISTERING, reason site-busy (the site already had 4 in progress here); the connectors come back after their backoff. role: primary (a site coming online) or standby (a second tunnel of a site online elsewhere; standbys hold at most half of the registrations in progress)', labelNames: ['reason', 'role'], registers: [registry] }),
    memberEvents: new Counter({ name: 'cluster_member_events_total', help: 'Membership changes this node saw in its peers: join, dead (reason lease or refused) and leave (planned)', labelNames: ['event', 'reason'], registers: [registry] }),
    fencingRejections: new Counter({ name: 'cluster_fencing_rejections_total', help: 'Durable writes refused because a newer owner exists', labelNames: ['kind'], registers: [registry] }),
    claimLatency: new Histogram({ name: 'cluster_claim_latency_seconds', help: 'Time to claim a batch of actors', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] }),
    attachSeconds: new Histogram({ name: 'cluster_connector_attach_seconds', help: 'Time from reading a connector\'s register, promote or standby message to its site attached here (how: register, promote, standby); time the message waited unread in a busy node is not in it', labelNames: ['how'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry] }),
    attachClaimSeconds: new Histogram({ name: 'cluster_connector_attach_claim_seconds', help: 'Of cluster_connector_attach_seconds, the wait for the site\'s claim (how: register, promote)', labelNames: ['how'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry] }),
    suspicions: new Counter({ name: 'cluster_peer_suspicions_total', help: 'Times this node suspected a peer (silent past failover.suspectAfter, and no other peer heard it); any in a run without faults is a false suspicion', labelNames: ['peer'], registers: [registry] }),
  };
}

export interface IngressMetricSources {
  tunnels: () => { primary: number; standby: number };
  /** Streams opened through this node's tunnels so far, by path. */
  tunnelStreams: () => { http2: number; raw: number };
  /** Unset where another thread's registry has the gauge. */
  certificateExpiries?: () => Promise<Array<{ hostname: string; seconds: number }>>;
}

/** DNS queries answered under one type and response code, and how many the counter has. */
class QueryCount {
  n = 0;
  reported = 0;
  constructor(
    readonly type: string,
    readonly rcode: string,
  ) {}

  inc() {
    this.n++;
  }
}

/** The ingress's metrics: tunnels, proxied requests, certificate expiry. */
export function createIngressMetrics(registry: Registry, src: IngressMetricSources) {
  new Gauge({
    name: 'cluster_tunnels',
    help: 'Site tunnels (connector connections) held by this node: role primary (the site is held here) or standby (a second path)',
    labelNames: ['role'],
    registers: [registry],
    collect() {
      const n = src.tunnels();
      this.set({ role: 'primary' }, n.primary);
      this.set({ role: 'standby' }, n.standby);
    },
  });
  const streamsReported = { http2: 0, raw: 0 };
  new Counter({
    name: 'cluster_tunnel_streams_total',
    help: 'Streams this node opened through its tunnels to targets: path http2 (multiplexed on the tunnel\'s HTTP/2 session) or raw (a TCP resource\'s stream on a connection of its own, relayed in the kernel where the splice module is built)',
    labelNames: ['path'],
    registers: [registry],
    collect() {
      const now = src.tunnelStreams();
      for (const path of ['http2', 'raw'] as const) {
        if (now[path] > streamsReported[path]) this.inc({ path }, now[path] - streamsReported[path]);
        streamsReported[path] = now[path];
      }
    },
  });
  const requests = new RequestMetrics(registry, { requests: 'cluster_ingress_requests_total', latency: 'cluster_ingress_request_seconds' }, REQUEST_SECONDS_BUCKETS);
  if (src.certificateExpiries) certificateExpiryGauge(registry, src.certificateExpiries);
  return {
    onRequest(resource: string, status: number, seconds: number) {
      requests.observe(resource, status, seconds);
    },
  };
}

/** Seconds until each issued certificate expires. */
export function certificateExpiryGauge(registry: Registry, expiries: () => Promise<Array<{ hostname: string; seconds: number }>>) {
  new Gauge({
    name: 'cluster_certificate_expiry_seconds',
    help: 'Seconds until each issued certificate expires',
    labelNames: ['hostname'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await expiries().catch(() => [])) this.set({ hostname: r.hostname }, r.seconds);
    },
  });
}

/** DNS's metrics: queries answered, the age of the zone data. */
export function createDnsMetrics(registry: Registry, src: { zoneSnapshotAgeMs: () => number }) {
  // Queries are counted in plain integers and added to the counter when scraped: a labelled
  // child's inc() still hashes its labels, a few percent of a cached answer's CPU.
  const queryCounts = new Map<string, QueryCount>();
  new Counter({
    name: 'cluster_dns_queries_total',
    help: 'DNS queries answered, by question type and response code',
    labelNames: ['type', 'rcode'],
    registers: [registry],
    collect() {
      for (const c of queryCounts.values()) {
        if (c.n === c.reported) continue;
        this.inc({ type: c.type, rcode: c.rcode }, c.n - c.reported);
        c.reported = c.n;
      }
    },
  });
  new Gauge({ name: 'cluster_dns_snapshot_age_seconds', help: 'Time since the DNS gateway last received zone data', registers: [registry], collect() { this.set(src.zoneSnapshotAgeMs() / 1000); } });
  return {
    queryCounter(type: string, rcode: string): { inc(): void } {
      const key = `${type} ${rcode}`;
      let c = queryCounts.get(key);
      if (!c) queryCounts.set(key, (c = new QueryCount(type, rcode)));
      return c;
    },
  };
}
