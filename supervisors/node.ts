// The node root supervisor: builds the parts of one node process and orders their lifecycle.
// Start order: admin gateway (so /healthz answers at once and /readyz says why it is not
// ready), Valkey (connects in the background), PostgreSQL + migrations (retried while
// PostgreSQL is unreachable), readiness probes, the actor layer, the admin API, the
// connector control channel, the data plane, then `running`.
// Stop order: `draining` (/readyz 503) for drainDelay, connectors sent elsewhere, actors
// handed off, membership left, ingress and DNS kept open another drainDelay for clients with
// older DNS answers, gateways close, pools close, `stopped`. Every stop step runs even when
// an earlier one fails. A force timeout (run-node.ts) ends a stuck shutdown.
import type { FastifyInstance } from 'fastify';
import { peerAdvertise, publicAddresses, redactConfig, type ClusterConfig } from '../cluster.config.ts';
import { CERT_ISSUER_ID } from '../actors/cert-issuer.ts';
import { ActorSystem } from '../actors/runtime.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { Lifecycle, type LifecycleState } from '../core/lifecycle.ts';
import type { Logger } from '../core/log.ts';
import type { ApiDeps } from '../gateways/admin/http.ts';
import { ensureSetupToken } from '../gateways/admin/routes/auth.ts';
import { createAdminGateway, listenAdmin } from '../gateways/admin/server.ts';
import { listenMetrics, type MetricsServer } from '../gateways/admin/metrics-server.ts';
import { statusQueries } from '../gateways/admin/status.ts';
import { ControlChannel } from '../gateways/connector/control.ts';
import { OidcSignIn } from '../gateways/identity/oidc.ts';
import { issueConnectorToken } from '../gateways/connector/token.ts';
import { unavailable } from '../gateways/wireguard/hub.ts';
import type { SiteTunnelStats } from '../protocol/wireguard.ts';
import { unroutedIds } from '../gateways/ingress/routes.ts';
import { PeerLink } from '../gateways/peer/link.ts';
import { readPeerTls } from '../gateways/peer/request.ts';
import { createDb, whileUnreachable, type DatabasePool } from '../persistence/db.ts';
import { PostgresProbe } from '../persistence/db-probe.ts';
import { HeapWatch } from '../core/heap-watch.ts';
import { LoopLag } from '../core/loop-lag.ts';
import { Admission } from '../gateways/connector/admission.ts';
import { migrate } from '../persistence/migrate.ts';
import { Sealer } from '../persistence/sealed.ts';
import { SnapshotStore } from '../persistence/snapshots.ts';
import { siteStandbys } from '../persistence/actor-stores.ts';
import { Valkey } from '../persistence/valkey.ts';
import { ActorHost } from './actor-host.ts';
import { ClusterEvents } from './cluster-events.ts';
import { registerActorKinds } from './actor-kinds.ts';
import { ResourceIndex } from './resource-index.ts';
import { SiteSeen } from './site-seen.ts';
import { routeChanges } from './change-routing.ts';
import { prepareEdge, type Edge } from './edge.ts';
import { Membership } from './membership.ts';
import { SiteNews } from './site-news.ts';
import { adminEndpoint, standbyAdvice } from './standby-advice.ts';
import { Suspicion } from './suspicion.ts';
import { createMetrics } from './metrics.ts';
import { startWireGuard, wireguardMetrics, type WireGuardSide } from './wireguard.ts';
import { OwnershipRegistry } from './ownership.ts';
import { Readiness } from './readiness.ts';

export interface NodeDeps {
  config: ClusterConfig;
  /** The file the config came from (with the environment): the ingress thread loads it too. */
  configFile?: string;
  logger: Logger;
  clock?: Clock;
}

/** What exists once PostgreSQL was reached: the actor layer and what serves on top of it. */
interface Running {
  db: DatabasePool;
  membership: Membership;
  ownership: OwnershipRegistry;
  peer: PeerLink;
  host: ActorHost;
  routes: SnapshotStore<'routes'>;
  /** Which peers are answering (traffic routes around the others; actors do not move on it). */
  suspicion: Suspicion;
  changes?: { stop(): void };
  siteSeen: SiteSeen;
  /** The node a site's connector should hold its standby tunnel to, as this node sees the members now. */
  adviseStandby: (siteId: string) => { node: string; endpoint: string } | undefined;
  control?: ControlChannel;
  edge?: Edge;
}

export class ClusterNode {
  readonly config: ClusterConfig;
  readonly #configFile: string | undefined;
  readonly lifecycle = new Lifecycle();
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #system: ActorSystem;
  readonly #metrics: ReturnType<typeof createMetrics>;
  /** How late the event loop runs: new connector registrations are shed while it lags (gateways/connector/admission.ts). */
  readonly #loopLag = new LoopLag();
  readonly #heap: HeapWatch;
  /** Readiness asks PostgreSQL on a connection of its own: a busy pool is not PostgreSQL down. */
  readonly #postgresProbe: PostgresProbe;
  readonly #readiness: Readiness;
  /** Membership and ownership events for the dashboard's live view. */
  readonly #events = new ClusterEvents();
  /** Seals and opens keys at rest under the cluster key (certificates, the ACME account). */
  readonly #sealer: Sealer;
  #valkey: Valkey | undefined;
  #admin: FastifyInstance | undefined;
  #metricsServer: MetricsServer | undefined;
  #api: ApiDeps | undefined;
  #run: Running | undefined;
  /** The WireGuard device and site peers, or why this node has none (set once PostgreSQL is reached). */
  #wireguard: WireGuardSide | undefined;
  #stopping: Promise<void> | undefined;

  constructor(deps: NodeDeps) {
    const config = (this.config = deps.config);
    this.#configFile = deps.configFile;
    this.#postgresProbe = new PostgresProbe(config.postgres.url);
    this.#clock = deps.clock ?? systemClock;
    this.#log = deps.logger;
    const { supervision } = config;
    this.#system = new ActorSystem({
      logger: this.#log,
      clock: this.#clock,
      restart: { maxRestarts: supervision.maxRestarts, windowMs: supervision.window, backoffMinMs: supervision.backoffMin, backoffMaxMs: supervision.backoffMax },
      onEscalate: (kind, id) => this.#run?.host.onEscalate(kind, id, supervision.window),
    });
    this.#sealer = new Sealer(config.encryptionKey);
    this.#readiness = new Readiness({
      nodeId: config.nodeId,
      clock: this.#clock,
      logger: this.#log,
      intervalMs: config.health.probeInterval,
      timeoutMs: config.health.probeTimeout,
      state: () => this.lifecycle.state,
      pingPostgres: (ms) => (this.#run ? this.#postgresProbe.ping(ms) : Promise.resolve(false)),
      pingValkey: (ms) => (this.#valkey ? this.#valkey.usable(ms) : Promise.resolve(false)),
      leaseHealthy: () => this.#run?.membership.healthy ?? false,
    });
    this.#heap = new HeapWatch({ log: this.#log.child({ component: 'heap' }) });
    this.#metrics = createMetrics({
      actorCount: (kind) => this.#system.count(kind),
      kinds: () => this.#run?.host.kinds() ?? [],
      leaseHealthy: () => this.#run?.membership.healthy ?? false,
      leaseRemainingMs: () => this.#run?.membership.leaseRemainingMs ?? 0,
      liveNodes: () => this.#run?.membership.liveIds().length ?? 0,
      dependencies: () => ({ postgres: this.#readiness.postgresUp, valkey: this.#readiness.valkeyUp }),
      heapLiveRatio: () => this.#heap.liveRatio,
    });
    wireguardMetrics(this.#metrics.registry, () => this.#wireguard);
    this.lifecycle.onChange((to, from) => this.#log.info({ from, to }, `node ${to}`));
  }

  get state(): LifecycleState {
    return this.lifecycle.state;
  }

  async start(): Promise<void> {
    const { config } = this;
    this.#log.info({ config: redactConfig(config) }, 'node starting');
    this.#admin = await createAdminGateway({ logger: this.#log, readiness: () => this.#readiness.report(), metrics: this.#metrics.registry, trustProxy: [...config.admin.trustProxy], api: () => this.#api });
    await listenAdmin(this.#admin, config.admin.bind);
    this.#metricsServer = await listenMetrics(this.#metrics.registry, config.metrics.bind, config.metrics.token);
    this.#log.info({ address: `${config.admin.bind.host}:${config.admin.bind.port}` }, 'admin gateway listening');
    const valkey = (this.#valkey = new Valkey({ url: config.valkey.url, clusterName: config.clusterName, connectTimeout: config.valkey.connectTimeout, commandTimeout: config.valkey.commandTimeout, sentinels: config.valkey.sentinels, masterName: config.valkey.masterName, logger: this.#log }));
    valkey.connect();
    this.#readiness.start();
    // Start-up waits for PostgreSQL (with backoff) instead of failing; a stop meanwhile ends the wait.
    const db = await whileUnreachable({ clock: this.#clock, logger: this.#log, keepTrying: () => this.state === 'starting' }, async () => {
      await migrate({ url: config.postgres.url, connectTimeout: config.postgres.connectTimeout, logger: this.#log });
      return createDb({ url: config.postgres.url, poolSize: config.postgres.poolSize, connectTimeout: config.postgres.connectTimeout, statementTimeout: config.postgres.statementTimeout, idleInTransactionTimeout: config.postgres.idleInTransactionTimeout, logger: this.#log });
    });
    if (!db) return; // stopped while waiting for PostgreSQL
    this.#wireguard = await startWireGuard({
      config, db, sealer: this.#sealer, logger: this.#log,
      onDeviceRestart: () => {
        const n = this.#run?.control?.reconnectWireGuard() ?? 0;
        this.#log.warn({ connectors: n }, 'wireguard device restarted; its connectors register again');
      },
      siteHere: (siteId) => this.#system.get('site', siteId) !== undefined,
    });
    const run = await this.#startActors(db, valkey);
    const zones = new SnapshotStore(valkey, 'zones');
    // One per node: the admin API's sign-in and the portal's share its discovery cache.
    const oidc = new OidcSignIn({ db, valkey, sealer: this.#sealer, clock: this.#clock, logger: this.#log, nodeId: config.nodeId });
    await this.#events.attach({ membership: run.membership, valkey, clock: this.#clock });
    this.#api = {
      db,
      valkey,
      nodeId: config.nodeId,
      secureCookies: config.admin.secureCookies,
      sessionTtlMs: config.admin.sessionTtl,
      sealer: this.#sealer,
      smtpConfigured: config.smtp.url !== undefined,
      owners: async (kind, ids) => new Map([...(await run.ownership.ownersOf(kind, ids))].map(([id, o]) => [id, o.node])),
      clusterEvents: (listener) => this.#events.subscribe(listener),
      zone: async (name) => (await zones.get(name))?.data,
      oidc,
      publicUrl: config.admin.publicUrl?.replace(/\/$/, ''),
      resourcePorts: config.ingress.resourcePorts,
      connectorToken: (siteId, generation) => ({ token: issueConnectorToken(config.clusterSecret, siteId, generation, config.connector.tokenTtl, this.#clock.now()), expiresAt: this.#clock.now() + config.connector.tokenTtl }),
      siteTunnel: async (siteId) => ((await run.host.ask('site', siteId, { type: 'status' }, 2000)) as { wireguard?: SiteTunnelStats | null } | undefined)?.wireguard ?? null,
      verifyDomain: (name) => run.host.ask('dns-zone', name, { type: 'verify' }, 10_000),
      obtainCertificate: (hostname) => run.host.ask('cert-issuer', CERT_ISSUER_ID, { type: 'obtain', hostname }, config.acme.obtainTimeout),
      ...statusQueries({
        valkey,
        routes: run.routes,
        leaseTtlMs: config.lease.ttl,
        live: () => run.membership.live(),
        ownersOf: (kind, ids) => run.ownership.ownersOf(kind, ids),
        // Actor counts from each node itself; a node that does not answer in time shows none.
        actorCounts: async (m) => (m.id === config.nodeId ? this.#actorCounts() : ((await run.peer.stats(m, 1000).catch(() => null))?.actors ?? null)),
      }),
    };
    await ensureSetupToken({ db, valkey, nodeId: config.nodeId }, this.#log).catch((err) => this.#log.warn({ err: (err as Error).message }, 'could not check for a first administrator'));
    const lag = this.#loopLag.start();
    this.#heap.start();
    // The ingress (on a thread of its own by default) is prepared first: the control channel
    // sets tunnels in it as soon as connectors register; it listens once started below.
    const edge = prepareEdge({ config, configFile: this.#configFile, db, valkey, oidc, sealer: this.#sealer, membership: run.membership, suspicion: run.suspicion, peer: run.peer, metrics: this.#metrics, clock: this.#clock, logger: this.#log });
    const admission = new Admission({ lagMs: () => lag.worstMs(), onRefused: (reason, role) => this.#metrics.registrationsRefused.inc({ reason, role }) });
    run.control = new ControlChannel({ admission, secret: config.clusterSecret, host: run.host, tunnels: edge.tunnels, standbys: siteStandbys(valkey), nodeId: config.nodeId, endpoint: adminEndpoint(`${config.admin.bind.host}:${config.admin.bind.port}`, publicAddresses(config)), clock: this.#clock, logger: this.#log, accepting: () => this.state === 'running', silentAfterMs: config.connector.silentAfter, fenced: () => run.membership.away, onAttached: (how, seconds) => this.#metrics.attachSeconds.observe({ how }, seconds), onClaimed: (how, seconds) => this.#metrics.attachClaimSeconds.observe({ how }, seconds) });
    run.control.attach(this.#admin.server);
    // A fence keeps the connectors' connections; the rejoin attaches them to new site actors.
    const control = run.control;
    run.membership.on('fenced', () => control.keepThroughFence());
    run.membership.on('joined', () => void control.reattachAll());
    // A member gone (or come): the standbys advised on it move to the node advised now.
    run.membership.on('view', (changed: boolean) => changed && control.readvise(run.adviseStandby));
    run.edge = await edge.start();
    this.#log.info({ thread: edge.thread }, 'ingress listening');
    this.#readiness.markMigrated();
    await this.#readiness.probe();
    this.lifecycle.to('running');
  }

  #actorCounts(): Record<string, number> {
    return Object.fromEntries((this.#run?.host.kinds() ?? []).map((k) => [k, this.#system.count(k)]));
  }

  /** Peer link, membership, ownership, the actor host and its kinds, in dependency order. */
  async #startActors(db: DatabasePool, valkey: Valkey): Promise<Running> {
    const { config } = this;
    const clock = this.#clock;
    const membership = new Membership({ valkey, clock, logger: this.#log, nodeId: config.nodeId, admin: `${config.admin.bind.host}:${config.admin.bind.port}`, peer: peerAdvertise(config), addresses: publicAddresses(config), ttlMs: config.lease.ttl, renewEveryMs: config.lease.renewEvery });
    membership.on('stalled', (outcome: 'confirmed' | 'fenced') => this.#metrics.leaseStalls.inc({ outcome }));
    membership.on('change', (e) => this.#metrics.memberEvents.inc({ event: e.type, reason: e.type === 'dead' ? e.reason : '' }));
    const ownership = new OwnershipRegistry({ valkey, db, membership });
    const edge = () => this.#run?.edge;
    const peer = new PeerLink({
      tls: readPeerTls(config.peer),
      secret: config.clusterSecret,
      self: () => ({ node: config.nodeId, incarnation: membership.incarnation }),
      logger: this.#log,
      handlers: {
        deliver: (kind, id, msg, timeoutMs) => host.deliverLocal(kind, id, msg, timeoutMs),
        route: (kind, id, msg, timeoutMs) => host.route(kind, id, msg, timeoutMs),
        inspect: () => ({ node: config.nodeId, incarnation: membership.incarnation, membership: membership.state, leaseHealthy: membership.healthy, live: membership.liveIds(), actors: this.#system.list() }),
        stats: () => ({ actors: this.#actorCounts() }),
        routes: (dead, id) => {
          const table = edge()?.routes;
          const live = new Set(membership.liveIds().filter((n) => !dead.includes(n)));
          const all = table?.all() ?? [];
          return id ? { total: all.length, route: table?.byId(id) ?? null } : { total: all.length, unrouted: unroutedIds(all, (n) => live.has(n)) };
        },
        txt: (name) => edge()?.zones.txt(name) ?? [],
        linkDown: (node) => void membership.suspect(node),
        heard: (node) => suspicion.heard(node),
        heardAgo: (node) => suspicion.heardAgo(node),
        forward: (stream, resourceId, targetId) => {
          const e = edge();
          if (!e) return stream.destroy();
          e.accept(stream, resourceId, targetId);
        },
      },
    });
    const suspicion = new Suspicion({
      clock,
      logger: this.#log,
      afterMs: config.failover.suspectAfter,
      probeEveryMs: config.failover.probeEvery,
      peers: () => membership.forTraffic().map((m) => m.id).filter((id) => id !== config.nodeId),
      ping: () => peer.ping(),
      askVia: (via, about, timeoutMs) => {
        const m = membership.trafficMember(via);
        return m ? peer.heardVia(m, about, timeoutMs) : Promise.resolve(null);
      },
    });
    suspicion.on('suspect', (id: string) => this.#metrics.suspicions.inc({ peer: id }));
    const host = new ActorHost({ system: this.#system, membership, ownership, peer, metrics: this.#metrics, clock, logger: this.#log, handoffTimeoutMs: config.failover.handoffTimeout, reconcileEveryMs: config.failover.reconcileEvery });
    const routes = new SnapshotStore(valkey, 'routes');
    const resourceIndex = new ResourceIndex();
    const siteSeen = new SiteSeen({ db, clock, logger: this.#log, everyMs: config.connector.seenEvery });
    const siteNews = new SiteNews(clock);
    const adviseStandby = (siteId: string) => standbyAdvice(siteId, config.nodeId, membership.live().filter((m) => !suspicion.isSuspected(m.id)));
    registerActorKinds(host, {
      resourceIndex,
      siteNews,
      siteSeen,
      config, db, valkey, sealer: this.#sealer, system: this.#system, membership, ownership, routes, zones: new SnapshotStore(valkey, 'zones'), metrics: this.#metrics, clock, logger: this.#log,
      wireguard: () => this.#wireguard ?? { unavailable: unavailable('not started yet') },
      standbyAdvice: adviseStandby,
      localTxt: (name) => edge()?.zones.txt(name) ?? [],
      knownRoute: (id) => edge()?.routes.snapshot(id),
      peerTxt: async (id, name) => {
        const m = membership.member(id); // gone meanwhile: it serves nothing
        return m ? peer.txt(m, name, 1000) : [];
      },
    });
    const run: Running = (this.#run = { db, membership, ownership, peer, host, routes, suspicion, siteSeen, adviseStandby });
    siteSeen.start();
    run.changes = await routeChanges({ host, valkey, db, membership, routes, resourceIndex, siteNews, clock, logger: this.#log, replayEveryMs: config.changes.replayEvery, replayWindowMs: config.changes.replayWindow, onChange: (kind) => this.#run?.edge?.changed(kind) });
    await peer.listen(config.peer.bind.host, config.peer.bind.port);
    await ownership.start();
    // Peer links follow the traffic view: a fenced node keeps its links to forward over.
    membership.on('view', () => peer.sync(membership.forTraffic()));
    await membership.start();
    peer.sync(membership.forTraffic());
    host.start();
    suspicion.start();
    return run;
  }

  /** Graceful stop; idempotent. Resolves when everything is closed. */
  stop(reason: string): Promise<void> {
    this.#stopping ??= this.#stop(reason);
    return this.#stopping;
  }

  async #stop(reason: string): Promise<void> {
    const { config } = this;
    const run = this.#run;
    this.#log.info({ reason }, 'node draining');
    this.lifecycle.to('draining');
    const drain = async () => void (config.shutdown.drainDelay > 0 && (await this.#clock.sleep(config.shutdown.drainDelay)));
    const steps: Array<[string, () => unknown]> = [
      // The load balancer sees /readyz fail and stops sending admin requests here.
      ['drain delay', drain],
      // Connectors go elsewhere first (a new tunnel before the old one closes); then actors
      // are handed off and the node leaves, so survivors take over at once and DNS stops
      // naming this node.
      ['move connectors', () => run?.control?.moveAll(config.failover.handoffTimeout)],
      ['close control channel', () => run?.control?.close()],
      ['hand off actors', () => run && Promise.race([run.host.handoffAll(), this.#clock.sleep(config.failover.handoffTimeout)])],
      ['stop actors', () => this.#system.stopAll(0)],
      ['leave membership', () => run?.membership.leave()],
      // Ingress and DNS stay open one more drainDelay: clients still holding this node's
      // address from an earlier answer are served, forwarded to where their site moved.
      ['second drain delay', drain],
      ['close data plane', () => run?.edge?.close()],
      ['close wireguard device', () => this.#wireguard && !('unavailable' in this.#wireguard) && this.#wireguard.close()],
      ['stop change routing', () => run?.changes?.stop()],
      ['stop recording when sites were seen', () => run?.siteSeen.stop()],
      ['stop cluster events', () => this.#events.stop()],
      ['stop suspicion', () => run?.suspicion.stop()],
      ['close peer link', () => run?.peer.close()],
      ['stop ownership', () => run?.ownership.stop()],
      ['stop actor system', () => this.#system.shutdown()],
      ['stop readiness', () => this.#readiness.stop()],
      ['close admin gateway', () => this.#admin?.close()],
      ['close metrics listener', () => this.#metricsServer?.close()],
      ['close valkey', () => this.#valkey?.close()],
      ['close postgres', () => run?.db.end()],
      ['close readiness probe connection', () => this.#postgresProbe.close()],
      ['stop the event-loop lag timer', () => this.#loopLag.stop()],
      ['stop the heap watch', () => this.#heap.stop()],
    ];
    for (const [step, fn] of steps) {
      try {
        await fn();
      } catch (err) {
        this.#log.warn({ step, err: (err as Error).message }, 'stop step failed; going on');
      }
    }
    this.lifecycle.to('stopped');
  }
}
