// The actor kinds a node hosts, each with its placement, catalog and behaviour built from
// the node's parts. Only wiring: what each actor does lives in actors/.
import type { ClusterConfig } from '../cluster.config.ts';
import { CERT_ISSUER_ID, certIssuerBehavior } from '../actors/cert-issuer.ts';
import { dnsZoneBehavior, dnsZoneCatalog } from '../actors/dns-zone.ts';
import { probeBehavior, probeCatalog } from '../actors/probe.ts';
import { resourceBehavior, resourceCatalog } from '../actors/resource.ts';
import type { ActorSystem } from '../actors/runtime.ts';
import { siteBehavior, type SiteDeps } from '../actors/site.ts';
import type { Clock } from '../core/clock.ts';
import { findProof } from '../gateways/dns/domain-proof.ts';
import type { Logger } from '../core/log.ts';
import { acmeTxtStore, siteSessions, siteStandbys, targetHealth } from '../persistence/actor-stores.ts';
import type { DatabasePool } from '../persistence/db.ts';
import type { Sealer } from '../persistence/sealed.ts';
import type { ResourceIndex } from './resource-index.ts';
import type { SiteNews } from './site-news.ts';
import type { SiteSeen } from './site-seen.ts';
import type { Snapshot, SnapshotStore } from '../persistence/snapshots.ts';
import type { Route } from '../protocol/route.ts';
import type { Valkey } from '../persistence/valkey.ts';
import type { ActorHost } from './actor-host.ts';
import { challengePublisher } from './challenge-propagation.ts';
import type { ClusterMetrics } from './metrics.ts';
import type { Membership } from './membership.ts';
import type { OwnershipRegistry } from './ownership.ts';

export interface ActorKindDeps {
  config: ClusterConfig;
  db: DatabasePool;
  valkey: Valkey;
  sealer: Sealer;
  system: ActorSystem;
  membership: Membership;
  ownership: OwnershipRegistry;
  routes: SnapshotStore<'routes'>;
  zones: SnapshotStore<'zones'>;
  metrics: ClusterMetrics;
  clock: Clock;
  logger: Logger;
  /** TXT values this node's DNS serves at a name (from its zone mirror). */
  localTxt(name: string): string[];
  /** TXT values another live node's DNS serves at a name. */
  peerTxt(nodeId: string, name: string): Promise<string[]>;
  /** This node's WireGuard side, or why it has none. */
  wireguard: SiteDeps['wireguard'];
  standbyAdvice: SiteDeps['standbyAdvice'];
  /** Last-seen times of the sites online here, written in batches. */
  siteSeen: SiteSeen;
  /** Which sites and hostname each local resource actor routes to (news goes only where it matters). */
  resourceIndex: ResourceIndex;
  /** When a site last moved, as this node heard: rechecks of orphaned routes wait while sites move. */
  siteNews: SiteNews;
  /** A route as this node's ingress holds it already (none before the ingress started). */
  knownRoute?: (resourceId: string) => Snapshot<Route> | undefined;
}

export function registerActorKinds(host: ActorHost, d: ActorKindDeps): void {
  const { config, db, valkey, membership } = d;
  const onProbeFenced = (id: string) => {
    d.metrics.fencingRejections.inc({ kind: 'probe' });
    d.logger.warn({ actor: 'probe', actorId: id }, 'fenced write refused; stopping stale actor');
    void d.system.get('probe', id)?.stop(0);
  };
  host.register({
    kind: 'probe',
    placement: 'placed',
    catalog: () => probeCatalog(db),
    behavior: (id, epoch) => probeBehavior({ db, nodeId: config.nodeId, clock: d.clock, onFenced: onProbeFenced }, id, epoch),
  });
  const sessions = siteSessions(valkey);
  const health = targetHealth(valkey);
  const standbys = siteStandbys(valkey);
  host.register({
    kind: 'site',
    placement: 'explicit',
    behavior: (id, epoch) =>
      siteBehavior({ db, nodeId: config.nodeId, clock: d.clock, online: (on) => d.siteSeen.set(id, epoch, on), publishHealth: health.publish, publishSession: sessions.publish, wireguard: d.wireguard, standbyAdvice: d.standbyAdvice, fenced: () => membership.away }, id, epoch),
  });
  host.register({
    kind: 'resource',
    placement: 'placed',
    catalog: () => resourceCatalog(db),
    behavior: (id, epoch) => {
      const copy = {}; // this running copy, as the resource index knows it
      return resourceBehavior({
        db,
        publish: (snapshot) => d.routes.put(snapshot),
        // A claim in progress counts: the claimer holds the new connection (its streams wait for the tunnel).
        siteOwners: async (ids) => new Map([...(await d.ownership.ownersOf('site', ids, { pending: true }))].map(([siteId, o]) => [siteId, o.node])),
        health: health.read,
        // Only standbys on live nodes count (a dead node's key may linger until its connector's next move).
        standbys: async (ids) => new Map([...(await standbys.read(ids))].filter(([, node]) => membership.member(node) !== undefined)),
        track: (route) => d.resourceIndex.set(id, route, copy),
        named: (nodes) => d.resourceIndex.named(id, nodes, copy),
        quietForMs: () => d.siteNews.quietForMs(),
      }, id, epoch);
    },
  });
  host.register({
    kind: 'dns-zone',
    placement: 'placed',
    catalog: () => dnsZoneCatalog(db),
    behavior: (zone, epoch) =>
      dnsZoneBehavior({
        db,
        recordTtl: Math.round(config.dns.recordTtl / 1000),
        caaIssuers: config.dns.caaIssuers,
        liveNodes: () => membership.live().map((m) => ({ id: m.id, addresses: m.addresses ?? [] })),
        routes: async (ids) => new Map([...(await d.routes.getMany(ids, d.knownRoute))].flatMap(([id, s]) => (s.data ? [[id, s.data] as const] : []))),
        acme: acmeTxtStore(valkey),
        publish: (snapshot) => d.zones.put(snapshot),
        // Without resolvers nothing is looked up by itself: a server admin verifies by hand.
        findProof: async (domain, token, nameServers) =>
          config.dns.verifyResolvers.length ? findProof({ domain, token, nameServers, resolvers: config.dns.verifyResolvers, timeoutMs: 2000 }) : undefined,
        announce: async ({ domainId, orgId, auditId }) => void (await valkey.publish('changes', { kind: 'domain', id: domainId, orgId, action: 'updated', auditId, touches: { names: [zone] } })),
        verifyEveryMs: config.dns.verifyResolvers.length ? config.dns.verifyEvery : 0,
        nodeId: config.nodeId,
        clock: d.clock,
      }, zone, epoch),
  });
  host.register({
    kind: 'cert-issuer',
    placement: 'placed',
    catalog: async () => [CERT_ISSUER_ID],
    behavior: (_id, epoch) =>
      certIssuerBehavior({
        db,
        sealer: d.sealer,
        nodeId: config.nodeId,
        clock: d.clock,
        directoryUrl: config.acme.directoryUrl,
        contact: config.acme.contact,
        checkEveryMs: config.acme.checkEvery,
        renewRemainingPercent: config.acme.renewRemainingPercent,
        logger: d.logger,
        challenge: challengePublisher({
          publish: async (zone, name, value, present) => void (await host.ask('dns-zone', zone, { type: present ? 'acme-set' : 'acme-clear', name, value }, 10_000)),
          selfId: config.nodeId,
          liveIds: () => membership.liveIds(),
          localTxt: d.localTxt,
          peerTxt: d.peerTxt,
          clock: d.clock,
          logger: d.logger,
        }),
        published: async (hostname) => void (await valkey.publish('certs', { hostname })),
        // The portal's certificate comes from ACME unless the operator gave one.
        clusterHostnames: config.access.portalHostname && !config.access.portalCert ? [config.access.portalHostname] : [],
      }, epoch),
  });
}
