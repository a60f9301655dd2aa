// The node root supervisor: owns the lifecycle of everything in one node process.
// Start order: admin gateway (so /healthz answers at once and /readyz says why it is not
// ready), Valkey (connects in the background), PostgreSQL + migrations (retried while
// PostgreSQL is unreachable), readiness probes, then `running`.
// Stop order: `draining` (/readyz 503) for drainDelay, connectors sent elsewhere, actors
// handed off, membership left, ingress and DNS kept open another drainDelay for clients with
// older DNS answers, gateways close, pools close, `stopped`. A force timeout ends a stuck shutdown with CLUSTER_ERR_NODE_SHUTDOWN_TIMEOUT.
import type { FastifyInstance } from 'fastify';
import { peerAdvertise, publicAddresses, redactConfig, type ClusterConfig } from '../cluster.config.ts';
import { probeBehavior, probeCatalog } from '../actors/probe.ts';
import { siteBehavior } from '../actors/site.ts';
import { ControlChannel } from '../gateways/connector/control.ts';
import { issueConnectorToken } from '../gateways/connector/token.ts';
import { TunnelRegistry } from '../gateways/connector/tunnels.ts';
import { acceptForwarded } from '../gateways/ingress/forwarded.ts';
import { RouteTable } from '../gateways/ingress/routes.ts';
import { TcpIngress } from '../gateways/ingress/tcp.ts';
import { UdpIngress } from '../gateways/ingress/udp.ts';
import { HttpIngress } from '../gateways/ingress/http.ts';
import { CertificateStore } from '../gateways/ingress/certs.ts';
import { issuedCertificates } from '../gateways/ingress/issued-certs.ts';
import { CERT_ISSUER_ID, certIssuerBehavior } from '../actors/cert-issuer.ts';
import { Sealer } from '../persistence/sealed.ts';
import { publishHealth, readHealth } from '../gateways/ingress/health.ts';
import { resourceBehavior, resourceCatalog } from '../actors/resource.ts';
import type { Route } from '../protocol/route.ts';
import { SnapshotStore, type Snapshot } from '../persistence/snapshots.ts';
import type { ResourceStatus } from '../gateways/admin/http.ts';
import { ActorSystem } from '../actors/runtime.ts';
import { PeerLink } from '../gateways/peer/link.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { ClusterError, isClusterError } from '../core/errors.ts';
import { Lifecycle, type LifecycleState } from '../core/lifecycle.ts';
import type { Logger } from '../core/log.ts';
import { createAdminGateway, listenAdmin } from '../gateways/admin/server.ts';
import type { ApiDeps } from '../gateways/admin/http.ts';
import { ensureSetupToken } from '../gateways/admin/routes/auth.ts';
import { createDb, pingDb, sql, type DatabasePool } from '../persistence/db.ts';
import { z } from 'zod';
import { migrate } from '../persistence/migrate.ts';
import { Valkey } from '../persistence/valkey.ts';
import { ActorHost } from './actor-host.ts';
import { dnsZoneBehavior, dnsZoneCatalog } from '../actors/dns-zone.ts';
import { DnsServer } from '../gateways/dns/server.ts';
import { ZoneTable } from '../gateways/dns/zones.ts';
import type { ZoneData } from '../protocol/zone.ts';
import { Counter, Gauge, Histogram } from 'prom-client';
import { Membership, type MembershipEvent } from './membership.ts';
import { challengePublisher } from './challenge-propagation.ts';
import { ChangeReplay } from './change-replay.ts';
import { createMetrics, type ClusterMetrics } from './metrics.ts';
import { OwnershipRegistry } from './ownership.ts';
import { Readiness } from './readiness.ts';

/** How often a node reads the audit log for change announcements it missed: how long a lost one can leave actors stale. */
const CHANGE_REPLAY_EVERY_MS = 10_000;

export interface NodeDeps {
  config: ClusterConfig;
  logger: Logger;
  clock?: Clock;
}

export class ClusterNode {
  readonly config: ClusterConfig;
  readonly lifecycle = new Lifecycle();
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #readiness: Readiness;
  #db: DatabasePool | undefined;
  #valkey: Valkey | undefined;
  #admin: FastifyInstance | undefined;
  #stopping: Promise<void> | undefined;
  readonly #system: ActorSystem;
  readonly #metrics: ClusterMetrics;
  #membership: Membership | undefined;
  #ownership: OwnershipRegistry | undefined;
  #peer: PeerLink | undefined;
  #replay: ChangeReplay | undefined;
  #host: ActorHost | undefined;
  #api: ApiDeps | undefined;
  #control: ControlChannel | undefined;
  readonly #tunnels = new TunnelRegistry();
  #routes: RouteTable | undefined;
  #tcpIngress: TcpIngress | undefined;
  #httpIngress: HttpIngress | undefined;
  #udpIngress: UdpIngress | undefined;
  #dns: DnsServer | undefined;
  /** Seals and opens keys at rest under the cluster key (certificates, the ACME account). */
  readonly #sealer: Sealer;
  #zones: ZoneTable | undefined;

  constructor(deps: NodeDeps) {
    this.config = deps.config;
    this.#clock = deps.clock ?? systemClock;
    this.#log = deps.logger;
    this.#readiness = new Readiness({
      nodeId: this.config.nodeId,
      clock: this.#clock,
      logger: this.#log,
      intervalMs: this.config.health.probeInterval,
      timeoutMs: this.config.health.probeTimeout,
      state: () => this.lifecycle.state,
      pingPostgres: (ms) => (this.#db ? pingDb(this.#db, ms) : Promise.resolve(false)),
      pingValkey: (ms) => (this.#valkey ? this.#valkey.ping(ms) : Promise.resolve(false)),
      leaseHealthy: () => this.#membership?.healthy ?? false,
    });
    const { supervision } = this.config;
    this.#system = new ActorSystem({
      logger: this.#log,
      clock: this.#clock,
      restart: { maxRestarts: supervision.maxRestarts, windowMs: supervision.window, backoffMinMs: supervision.backoffMin, backoffMaxMs: supervision.backoffMax },
      onEscalate: (kind, id) => this.#host?.onEscalate(kind, id, supervision.window),
    });
    this.#sealer = new Sealer(this.config.encryptionKey);
    this.#metrics = createMetrics({
      actorCount: (kind) => this.#system.count(kind),
      kinds: () => this.#host?.kinds() ?? [],
      leaseHealthy: () => this.#membership?.healthy ?? false,
      leaseRemainingMs: () => this.#membership?.leaseRemainingMs ?? 0,
      liveNodes: () => this.#membership?.liveIds().length ?? 0,
      dependencies: () => ({ postgres: this.#readiness.postgresUp, valkey: this.#readiness.valkeyUp }),
    });
    this.lifecycle.onChange((to, from) => this.#log.info({ from, to }, `node ${to}`));
  }

  get state(): LifecycleState {
    return this.lifecycle.state;
  }

  get db(): DatabasePool {
    if (!this.#db) throw new ClusterError('CLUSTER_ERR_NODE_NOT_READY', 'database pool not created yet', { state: this.state });
    return this.#db;
  }

  get valkey(): Valkey {
    if (!this.#valkey) throw new ClusterError('CLUSTER_ERR_NODE_NOT_READY', 'valkey client not created yet', { state: this.state });
    return this.#valkey;
  }

  async start(): Promise<void> {
    const { config } = this;
    this.#log.info({ config: redactConfig(config) }, 'node starting');
    this.#admin = await createAdminGateway({
      logger: this.#log,
      readiness: () => this.#readiness.report(),
      metrics: this.#metrics.registry,
      trustProxy: [...config.admin.trustProxy],
      api: () => this.#api,
    });
    await listenAdmin(this.#admin, config.admin.bind);
    this.#log.info({ address: `${config.admin.bind.host}:${config.admin.bind.port}` }, 'admin gateway listening');

    this.#valkey = new Valkey({ url: config.valkey.url, clusterName: config.clusterName, connectTimeout: config.valkey.connectTimeout, commandTimeout: config.valkey.commandTimeout, logger: this.#log });
    this.#valkey.connect();
    this.#readiness.start();

    await this.#whenPostgresReachable(async () => {
      await migrate({ url: config.postgres.url, connectTimeout: config.postgres.connectTimeout, logger: this.#log });
      this.#db = await createDb({ url: config.postgres.url, poolSize: config.postgres.poolSize, connectTimeout: config.postgres.connectTimeout, statementTimeout: config.postgres.statementTimeout, idleInTransactionTimeout: config.postgres.idleInTransactionTimeout, logger: this.#log });
    });
    if (this.state !== 'starting') return; // stopped while waiting for PostgreSQL
    await this.#startActors();
    const membership = this.#membership!;
    const routeSnapshots = new SnapshotStore(this.valkey, 'routes');
    this.#api = {
      db: this.db,
      valkey: this.valkey,
      nodeId: config.nodeId,
      secureCookies: false,
      sessionTtlMs: config.admin.sessionTtl,
      connectorToken: (siteId) => {
        const ttl = 60 * 60_000;
        return { token: issueConnectorToken(config.clusterSecret, siteId, ttl), expiresAt: Date.now() + ttl };
      },
      nodes: async () => {
        const live = membership.live();
        const v = this.valkey;
        const [ttls, stats] = await Promise.all([
          v.call((c) => live.reduce((p, m) => p.pttl(v.keys.lease(m.id)), c.pipeline()).exec()),
          // Actor counts from each node itself; a node that does not answer in time shows none.
          Promise.all(live.map((m) => (m.id === config.nodeId ? this.#actorStats() : (this.#peer!.stats(m.peer, 1000) as Promise<{ actors: Record<string, number> }>).catch(() => null)))),
        ]);
        return live.map((m, i) => {
          const pttl = ttls?.[i]?.[1] as number | undefined;
          return { ...m, leaseAgeMs: pttl !== undefined && pttl >= 0 ? config.lease.ttl - pttl : null, actors: stats[i]?.actors ?? null };
        });
      },
      // A site is online where its site actor runs (placed where its connector is connected).
      siteStatus: async (siteIds) => {
        const owners = await this.#ownership!.ownersOf('site', siteIds).catch(() => new Map());
        const v = this.valkey;
        const res = siteIds.length
          ? await v.call((c) => siteIds.reduce((p, id) => p.get(v.keys.siteSession(id)).hgetall(v.keys.targetHealth(id)), c.pipeline()).exec()).catch(() => null)
          : [];
        return new Map(siteIds.map((id, i) => {
          const session = owners.has(id) ? (JSON.parse((res?.[2 * i]?.[1] as string | null) ?? 'null') as { since: number } | null) : null;
          const health = Object.entries((res?.[2 * i + 1]?.[1] ?? {}) as Record<string, string>).map(([targetId, h]) => ({ targetId, healthy: h === '1' }));
          return [id, { online: owners.has(id), node: owners.get(id)?.node ?? null, connectedSince: session ? new Date(session.since).toISOString() : null, targets: health }];
        }));
      },
      obtainCertificate: (hostname) => this.actors.ask('cert-issuer', CERT_ISSUER_ID, { type: 'obtain', hostname }, 120_000),
      resourceStatus: async (ids) => {
        const out = new Map<string, ResourceStatus>();
        const snapshots = await routeSnapshots.getMany(ids).catch(() => new Map<string, Snapshot<Route>>());
        for (const id of ids) {
          const route = snapshots.get(id)?.data;
          if (!route) continue;
          const targets = route.targets.map((t) => ({ targetId: t.id, siteId: t.siteId, enabled: t.enabled, healthy: t.healthy, siteOnline: t.siteId in route.owners, node: route.owners[t.siteId] ?? null }));
          const servingNodes = [...new Set(targets.filter((t) => t.enabled && t.healthy && t.node).map((t) => t.node!))].sort();
          out.set(id, { published: true, servingNodes, targets });
        }
        return out;
      },
    };
    await ensureSetupToken({ db: this.db, valkey: this.valkey, nodeId: config.nodeId }, this.#log).catch((err) =>
      this.#log.warn({ err: (err as Error).message }, 'could not check for a first administrator'),
    );
    this.#control = new ControlChannel({ secret: config.clusterSecret, host: this.#host!, tunnels: this.#tunnels, logger: this.#log, accepting: () => this.state === 'running' });
    this.#control.attach(this.#admin!.server);
    await this.#startIngress();
    this.#readiness.markMigrated();
    await this.#readiness.probe();
    this.lifecycle.to('running');
  }

  #actorStats(): { actors: Record<string, number> } {
    return { actors: Object.fromEntries((this.#host?.kinds() ?? []).map((k) => [k, this.#system.count(k)])) };
  }

  /** Peer link, membership, ownership and the actor host, in the order they depend on each other. */
  async #startActors(): Promise<void> {
    const { config } = this;
    const db = this.db;
    const valkey = this.valkey;
    const membership = new Membership({
      valkey,
      clock: this.#clock,
      logger: this.#log,
      nodeId: config.nodeId,
      admin: `${config.admin.bind.host}:${config.admin.bind.port}`,
      peer: peerAdvertise(config),
      addresses: publicAddresses(config),
      ttlMs: config.lease.ttl,
      renewEveryMs: config.lease.renewEvery,
    });
    this.#membership = membership;
    membership.on('change', (e: MembershipEvent) => this.#metrics.memberEvents.inc({ event: e.type, reason: e.type === 'dead' ? e.reason : '' }));
    const ownership = new OwnershipRegistry({ valkey, db, membership });
    this.#ownership = ownership;
    const host = (): ActorHost => this.#host!;
    const peer = new PeerLink({
      secret: config.clusterSecret,
      self: () => ({ node: config.nodeId, incarnation: membership.incarnation }),
      logger: this.#log,
      handlers: {
        deliver: (kind, id, msg, timeoutMs) => host().deliverLocal(kind, id, msg, timeoutMs),
        route: (kind, id, msg, timeoutMs) => host().route(kind, id, msg, timeoutMs),
        inspect: () => ({
          node: config.nodeId,
          incarnation: membership.incarnation,
          membership: membership.state,
          leaseHealthy: membership.healthy,
          live: membership.liveIds(),
          actors: this.#system.list(),
        }),
        stats: () => this.#actorStats(),
        txt: (name) => this.#zones?.txt(name) ?? [],
        linkDown: (node) => void membership.suspect(node),
        forward: (stream, resourceId, targetId) => {
          if (!this.#routes) return stream.destroy();
          const http = this.#httpIngress;
          acceptForwarded(stream, resourceId, targetId, {
            routes: this.#routes,
            tunnels: this.#tunnels,
            logger: this.#log,
            terminateTls: (s, client) => (http ? http.terminateTls(s, client) : s.destroy()),
          });
        },
      },
    });
    this.#peer = peer;
    this.#host = new ActorHost({
      system: this.#system,
      membership,
      ownership,
      peer,
      metrics: this.#metrics,
      clock: this.#clock,
      logger: this.#log,
      handoffTimeoutMs: config.failover.handoffTimeout,
      reconcileEveryMs: config.failover.reconcileEvery,
    });
    const onProbeFenced = (id: string) => {
      this.#metrics.fencingRejections.inc({ kind: 'probe' });
      this.#log.warn({ actor: 'probe', actorId: id }, 'fenced write refused; stopping stale actor');
      void this.#system.get('probe', id)?.stop(0);
    };
    this.#host.register({
      kind: 'probe',
      placement: 'placed',
      catalog: () => probeCatalog(db),
      behavior: (id, epoch) => probeBehavior({ db, nodeId: config.nodeId, onFenced: onProbeFenced }, id, epoch),
    });
    this.#host.register({
      kind: 'site',
      placement: 'explicit',
      behavior: (id, epoch) =>
        siteBehavior({
          db,
          nodeId: config.nodeId,
          seenEveryMs: 15_000,
          publishHealth: (site, targets) => publishHealth(valkey, site, targets),
          publishSession: async (site, session) => {
            const key = valkey.keys.siteSession(site);
            if (session) await valkey.call((c) => c.set(key, JSON.stringify(session)));
            else await valkey.call((c) => c.del(key));
            await valkey.publish('sites', { siteId: site, node: session?.node ?? null });
          },
        }, id, epoch),
    });
    const routes = new SnapshotStore(valkey, 'routes');
    this.#host.register({
      kind: 'resource',
      placement: 'placed',
      catalog: () => resourceCatalog(db),
      behavior: (id, epoch) =>
        resourceBehavior({
          db,
          publish: (snapshot) => routes.put(snapshot),
          siteOwners: async (ids) => new Map([...(await ownership.ownersOf('site', ids))].map(([siteId, o]) => [siteId, o.node])),
          health: (ids) => readHealth(valkey, ids),
        }, id, epoch),
    });
    const zones = new SnapshotStore(valkey, 'zones');
    this.#host.register({
      kind: 'dns-zone',
      placement: 'placed',
      catalog: () => dnsZoneCatalog(db),
      behavior: (zone, epoch) =>
        dnsZoneBehavior({
          db,
          recordTtl: Math.round(config.dns.recordTtl / 1000),
          caaIssuers: config.dns.caaIssuers,
          liveNodes: () => membership.live().map((m) => ({ id: m.id, addresses: m.addresses ?? [] })),
          routes: async (ids) => new Map([...(await routes.getMany(ids))].flatMap(([id, s]) => (s.data ? [[id, s.data] as const] : []))),
          acme: {
            all: async (z) => Object.fromEntries(Object.entries(await valkey.call((c) => c.hgetall(valkey.keys.acmeTxt(z)))).map(([k, v]) => [k, JSON.parse(v) as string[]])),
            set: async (z, name, values) => {
              if (values.length) await valkey.call((c) => c.hset(valkey.keys.acmeTxt(z), name, JSON.stringify(values)));
              else await valkey.call((c) => c.hdel(valkey.keys.acmeTxt(z), name));
            },
          },
          publish: (snapshot) => zones.put(snapshot),
        }, zone, epoch),
    });
    const sealer = this.#sealer;
    this.#host.register({
      kind: 'cert-issuer',
      placement: 'placed',
      catalog: async () => [CERT_ISSUER_ID],
      behavior: (_id, epoch) =>
        certIssuerBehavior({
          db,
          sealer,
          nodeId: config.nodeId,
          directoryUrl: config.acme.directoryUrl,
          contact: config.acme.contact,
          checkEveryMs: config.acme.checkEvery,
          renewRemainingPercent: config.acme.renewRemainingPercent,
          logger: this.#log,
          challenge: challengePublisher({
            publish: async (zone, name, value, present) => void (await this.actors.ask('dns-zone', zone, { type: present ? 'acme-set' : 'acme-clear', name, value }, 10_000)),
            selfId: config.nodeId,
            liveIds: () => membership.liveIds(),
            localTxt: (name) => this.#zones?.txt(name) ?? [],
            peerTxt: async (id, name) => {
              const m = membership.member(id); // gone meanwhile: it serves nothing
              return m ? peer.txt(m.peer, name, 1000) : [];
            },
            clock: this.#clock,
            logger: this.#log,
          }),
          published: async (hostname) => void (await valkey.publish('certs', { hostname })),
        }, epoch),
    });
    // Admin writes reach the connectors of the sites held here and the resource actors held
    // here (which republish their routes); a new or deleted resource also moves placement.
    const applyChange = (kind: string | undefined) => {
      if (kind === 'target' || kind === 'site' || kind === 'resource') this.#host?.broadcastLocal('site', { type: 'config-changed' });
      if (kind === 'target' || kind === 'site' || kind === 'resource' || kind === 'org' || kind === 'domain') {
        this.#host?.broadcastLocal('resource', { type: 'reload' });
        if (kind !== 'target') this.#host?.broadcastLocal('dns-zone', { type: 'reload' });
        if (kind === 'resource' || kind === 'domain') this.#host?.broadcastLocal('cert-issuer', { type: 'check' });
        if (kind === 'resource' || kind === 'org' || kind === 'domain') void this.#host?.reconcile();
      }
    };
    // Announcements lost on the way (Valkey away, a subscription reconnecting) are found again
    // in the audit log.
    const replay = new ChangeReplay({ db, clock: this.#clock, logger: this.#log, everyMs: CHANGE_REPLAY_EVERY_MS, lookBackMs: 60_000, apply: (kinds) => kinds.forEach(applyChange) });
    this.#replay = replay;
    await valkey.subscribe('changes', (m) => {
      const { kind, auditId } = m as { kind?: string; auditId?: unknown };
      if (typeof auditId === 'number') replay.announced(auditId);
      applyChange(kind);
    });
    await replay.start();
    // Zones follow their resources' routes (site moves, health) and the live nodes.
    await routes.subscribe(() => this.#host?.broadcastLocal('dns-zone', { type: 'refresh' }));
    // Health reports and site moves change where traffic may go.
    const refresh = (m: unknown) => this.#host?.broadcastLocal('resource', { type: 'refresh', siteId: (m as { siteId?: string }).siteId });
    await valkey.subscribe('health', refresh);
    await valkey.subscribe('sites', refresh);
    membership.on('view', () => {
      this.#host?.broadcastLocal('resource', { type: 'refresh' });
      this.#host?.broadcastLocal('dns-zone', { type: 'refresh' });
    });
    await peer.listen(config.peer.bind.host, config.peer.bind.port);
    await ownership.start();
    membership.on('view', () => peer.sync(membership.live()));
    await membership.start();
    peer.sync(membership.live());
    this.#host.start();
  }

  /** Routes, target health, and the HTTP(S), TCP and UDP ingress. */
  async #startIngress(): Promise<void> {
    const routes = new RouteTable({ valkey: this.valkey, logger: this.#log });
    this.#routes = routes;
    const membership = this.#membership!;
    const peer = this.#peer!;
    const placement = {
      nodeId: this.config.nodeId,
      isLive: (node: string) => membership.member(node) !== undefined,
      forward: (node: string, resourceId: string, targetId: string, header: Buffer) => {
        const member = membership.member(node);
        if (!member) return Promise.reject(new Error(`node ${node} is not live`));
        return peer.openForward(member.peer, resourceId, targetId, header);
      },
    };
    this.#tcpIngress = new TcpIngress({ routes, tunnels: this.#tunnels, bindHost: this.config.ingress.https.host, logger: this.#log, placement });
    this.#udpIngress = new UdpIngress({ routes, tunnels: this.#tunnels, bindHost: this.config.ingress.https.host, logger: this.#log, placement });
    // Issued certificates: every node decrypts and serves them; a wrong cluster key stops the
    // node here, loudly, instead of serving generated certificates in their place.
    const issued = issuedCertificates(this.db, this.#sealer);
    await issued.checkKey();
    const certs = new CertificateStore(issued);
    for (const hostname of await issued.hostnames()) await certs.reload(hostname).catch((err) => this.#log.error({ hostname, err: (err as Error).message }, 'cannot load a certificate'));
    await this.valkey.subscribe('certs', (m) => {
      const hostname = (m as { hostname?: string }).hostname;
      if (typeof hostname === 'string') void certs.reload(hostname).then(
        (ok) => this.#log.info({ hostname, loaded: ok }, 'certificate reloaded'),
        (err) => this.#log.error({ hostname, err: (err as Error).message }, 'cannot load a certificate'),
      );
    });
    const registry = this.#metrics.registry;
    const tunnels = this.#tunnels;
    new Gauge({ name: 'cluster_tunnels', help: 'Site tunnels (connector connections) held by this node', registers: [registry], collect() { this.set(tunnels.size); } });
    const requests = new Counter({ name: 'cluster_ingress_requests_total', help: 'HTTP requests proxied by this node, by resource and status', labelNames: ['resource', 'status'], registers: [registry] });
    const latency = new Histogram({ name: 'cluster_ingress_request_seconds', help: 'Time to the end of the response, by resource', labelNames: ['resource'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [registry] });
    const db = this.db;
    new Gauge({
      name: 'cluster_certificate_expiry_seconds',
      help: 'Seconds until each issued certificate expires',
      labelNames: ['hostname'],
      registers: [registry],
      async collect() {
        this.reset();
        const rows = await db.any(sql.type(z.object({ hostname: z.string(), seconds: z.coerce.number() }))`
          SELECT hostname, extract(epoch FROM not_after - now()) AS seconds FROM certificates WHERE status = 'valid'`).catch(() => []);
        for (const r of rows) this.set({ hostname: r.hostname }, r.seconds);
      },
    });
    this.#httpIngress = new HttpIngress({
      onRequest: (resource, status, seconds) => {
        requests.inc({ resource, status: String(status) });
        latency.observe({ resource }, seconds);
      },
      routes,
      tunnels: this.#tunnels,
      placement,
      certs,
      http: this.config.ingress.http,
      https: this.config.ingress.https,
      logger: this.#log,
    });
    await routes.start();
    this.#tcpIngress.sync();
    this.#udpIngress.sync();
    await this.#httpIngress.listen();
    await this.#startDns();
  }

  /** The authoritative DNS gateway, answering from the zones the dns-zone actors publish. */
  async #startDns(): Promise<void> {
    const zones = new ZoneTable({ valkey: this.valkey, logger: this.#log });
    this.#zones = zones;
    const queries = new Counter({ name: 'cluster_dns_queries_total', help: 'DNS queries answered, by question type and response code', labelNames: ['type', 'rcode'], registers: [this.#metrics.registry] });
    new Gauge({ name: 'cluster_dns_snapshot_age_seconds', help: 'Time since the DNS gateway last received zone data', registers: [this.#metrics.registry], collect() { this.set(zones.age / 1000); } });
    await zones.start();
    this.#dns = new DnsServer({
      zones,
      host: this.config.dns.bind.host,
      port: this.config.dns.bind.port,
      rateLimit: this.config.dns.rateLimit,
      logger: this.#log,
      onQuery: (type, rcode) => queries.inc({ type, rcode }),
    });
    await this.#dns.listen();
  }

  /** The actor host (routing, claims); available once the node runs. */
  get actors(): ActorHost {
    if (!this.#host) throw new ClusterError('CLUSTER_ERR_NODE_NOT_READY', 'actor host not started', { state: this.state });
    return this.#host;
  }

  /** Start-up work that needs PostgreSQL waits for it (with backoff) instead of failing. */
  async #whenPostgresReachable(step: () => Promise<void>): Promise<void> {
    for (let attempt = 0; this.state === 'starting'; attempt++) {
      try {
        await step();
        return;
      } catch (err) {
        if (!isClusterError(err, 'CLUSTER_ERR_DB_UNAVAILABLE')) throw err;
        const delay = Math.min(5000, 200 * 2 ** Math.min(attempt, 5));
        this.#log.warn({ code: err.code, retryInMs: delay }, 'postgres unreachable; start-up waits');
        await this.#clock.sleep(delay);
      }
    }
  }

  /** Graceful stop; idempotent. Resolves when everything is closed. */
  stop(reason: string): Promise<void> {
    this.#stopping ??= this.#stop(reason);
    return this.#stopping;
  }

  async #stop(reason: string): Promise<void> {
    const { config } = this;
    this.#log.info({ reason }, 'node draining');
    this.lifecycle.to('draining');
    // The load balancer sees /readyz fail and stops sending admin requests here.
    if (config.shutdown.drainDelay > 0) await this.#clock.sleep(config.shutdown.drainDelay);
    // Connectors go elsewhere first (a new tunnel before the old one closes); then actors are
    // handed off and the node leaves, so the survivors take over at once and DNS stops
    // naming this node.
    await this.#control?.moveAll(config.failover.handoffTimeout);
    this.#control?.close();
    if (this.#host) {
      await Promise.race([
        this.#host.handoffAll().catch((err) => this.#log.warn({ err: (err as Error).message }, 'handoff failed')),
        this.#clock.sleep(config.failover.handoffTimeout),
      ]);
    }
    await this.#system.stopAll(0);
    await this.#membership?.leave();
    // Ingress and DNS stay open one more drainDelay: clients still holding this node's address
    // from an earlier answer are served, forwarded to the node their site's tunnel moved to.
    if (config.shutdown.drainDelay > 0) await this.#clock.sleep(config.shutdown.drainDelay);
    this.#tcpIngress?.close();
    this.#udpIngress?.close();
    await this.#httpIngress?.close();
    await this.#dns?.close();
    this.#replay?.stop();
    await this.#zones?.stop();
    await this.#routes?.stop();
    await this.#peer?.close();
    await this.#ownership?.stop();
    this.#system.shutdown();
    this.#readiness.stop();
    await this.#admin?.close();
    await this.#valkey?.close();
    await this.#db?.end();
    this.lifecycle.to('stopped');
  }
}
