// Which news reaches which actors on this node. Admin writes (announced on `changes`, or
// found again in the audit log when the announcement was lost), route snapshots, health
// reports, site moves and membership views each wake the local actors whose output depends
// on them; a new or deleted resource, org or domain also moves placement.
// News names what it touches (an announcement's `touches`, a snapshot's hostname, a report's
// site) and only those actors are woken: waking every local actor of a kind, each reloading
// from PostgreSQL or reading Valkey, grew with the number of sites on every node. A replayed
// change, or one whose writer did not say, still wakes them all.
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import type { DatabasePool } from '../persistence/db.ts';
import type { SnapshotStore } from '../persistence/snapshots.ts';
import type { Valkey } from '../persistence/valkey.ts';
import type { ActorKindName, ActorMessage } from '../protocol/actor-messages.ts';
import type { ChangeTouches, OwnershipChange } from '../protocol/channels.ts';
import type { ActorHost } from './actor-host.ts';
import { ChangeReplay } from './change-replay.ts';
import { GoneNodes } from './gone-nodes.ts';
import { QuietBatch } from './quiet-batch.ts';
import type { SiteNews } from './site-news.ts';
import type { Membership, MembershipEvent } from './membership.ts';
import { enclosingNames, type ResourceIndex } from './resource-index.ts';

type Reaction = { [K in ActorKindName]: { kind: K; msg: ActorMessage<K> } }[ActorKindName];

/**
 * What a change of one kind of object means for the actors (pure, so the rule is tested on
 * its own): sites push new targets to their connectors, resources republish their routes,
 * zones recompute records, the cert issuer looks for new hostnames.
 */
export function reactionsTo(kind: string): { tell: Reaction[]; replace: boolean } {
  const tell: Reaction[] = [];
  if (kind === 'target' || kind === 'site' || kind === 'resource') tell.push({ kind: 'site', msg: { type: 'config-changed' } });
  if (kind === 'target' || kind === 'site' || kind === 'resource' || kind === 'org' || kind === 'domain') {
    tell.push({ kind: 'resource', msg: { type: 'reload' } });
    if (kind !== 'target') tell.push({ kind: 'dns-zone', msg: { type: 'reload' } });
    if (kind === 'resource' || kind === 'domain') tell.push({ kind: 'cert-issuer', msg: { type: 'check' } });
  }
  return { tell, replace: kind === 'resource' || kind === 'org' || kind === 'domain' };
}

/**
 * The local actors of `kind` a change that touches `touches` concerns (pure but for the two
 * lookups, so the rule is tested on its own): sites by id; resources by id, by the sites
 * their targets are on, and by the names they lie under; zones enclosing the names and the
 * touched resources' hostnames.
 */
export function touchedIds(kind: ActorKindName, touches: ChangeTouches, index: Pick<ResourceIndex, 'bySite' | 'under' | 'hostname'>, zoneHere: (zone: string) => boolean): string[] {
  const resources = () => new Set([...(touches.resourceIds ?? []), ...(touches.siteIds ?? []).flatMap((s) => index.bySite(s)), ...(touches.names ?? []).flatMap((n) => index.under(n))]);
  switch (kind) {
    case 'site':
      return touches.siteIds ?? [];
    case 'resource':
      return [...resources()];
    case 'dns-zone': {
      const names = [...(touches.names ?? []), ...[...resources()].flatMap((id) => index.hostname(id) ?? [])];
      return [...new Set(names.flatMap((n) => enclosingNames(n).filter(zoneHere)))];
    }
    default:
      return [];
  }
}

/**
 * The sites whose resources recompute on an ownership announcement (pure): releases of
 * sites. A site actor announces its session gone and only then stops and releases its
 * ownership, so a route recomputed on the first announcement can still read the old owner
 * (the claim is what names a site's node in a route); without this, nothing recomputed it
 * again and the route kept sending traffic to a node without the tunnel. Claims need no
 * rule: a new session is announced after its claim.
 */
export function sitesReleased(m: OwnershipChange): string[] {
  return m.type === 'released' && m.kind === 'site' ? m.ids : [];
}

/** A zone's addresses follow its sites' moves once no site has moved for this long (QuietBatch)... */
export const ZONE_QUIET_MS = 1000;
/** ...or this long after the first move it follows, at the latest. */
export const ZONE_CAP_MS = 15_000;
/** A node's routes are recomputed once no site has moved for this long after it went (supervisors/gone-nodes.ts)... */
export const GONE_QUIET_MS = 2000;
/** ...or this long after it went, whatever the news (a 10,000-site storm on two cores runs 20-40 s: a cap within it recomputed the routes of every site not yet moved). */
export const GONE_CAP_MS = 60_000;

export interface ChangeRoutingDeps {
  host: ActorHost;
  valkey: Valkey;
  db: DatabasePool;
  membership: Membership;
  routes: SnapshotStore<'routes'>;
  /** Sites and hostnames of this node's resource actors. */
  resourceIndex: ResourceIndex;
  /** Told of every site move and health report heard. */
  siteNews: SiteNews;
  clock: Clock;
  logger: Logger;
  /** How often the audit log is read for lost announcements (how long one can leave actors stale). */
  replayEveryMs: number;
  /** How far back in time the replay reads (ids are taken at insert, committed out of order). */
  replayWindowMs: number;
  /** Every change's kind, announced or replayed, for parts outside the actors (revoked sessions). */
  onChange?: (kind: string) => void;
}

/** Subscribes everything; resolves once subscribed. Returns how to stop the replay. */
export async function routeChanges(d: ChangeRoutingDeps): Promise<{ stop(): void }> {
  const { host, resourceIndex: index } = d;
  const zoneHere = (zone: string) => host.hasLocal('dns-zone', zone);
  const apply = (kind: string, touches?: ChangeTouches) => {
    const r = reactionsTo(kind);
    for (const { kind: k, msg } of r.tell) {
      if (!touches || k === 'cert-issuer') host.broadcastLocal(k, msg as never);
      else for (const id of touchedIds(k, touches, index, zoneHere)) host.tellLocal(k, id, msg as never);
    }
    if (r.replace) host.reconcileSoon();
    d.onChange?.(kind);
  };
  const replay = new ChangeReplay({ db: d.db, clock: d.clock, logger: d.logger, everyMs: d.replayEveryMs, lookBackMs: d.replayWindowMs, apply: (kinds) => kinds.forEach((k) => apply(k)) });
  await d.valkey.subscribe('changes', (m) => {
    if (m.auditId !== undefined) replay.announced(m.auditId);
    apply(m.kind, m.touches);
  });
  await replay.start();
  // A zone follows the routes of its hostnames (site moves, health): the zone enclosing the
  // route's hostname recomputes. A deleted route's hostname is remembered from before. What a
  // route change does to a zone only narrows its hostname's addresses to the nodes holding
  // the sites now (its hostnames come from PostgreSQL, reloaded on the admin change; a dead
  // node leaves every zone at once on the membership change below; any live node named
  // forwards): that waits while other sites move, 1 s of quiet, 15 s at most (QuietBatch).
  // In a reconnect storm each zone's routes change by the dozen, and each recompute that
  // changes records moves the serial, a fenced PostgreSQL statement (about one per promoted site).
  const hostOf = new Map<string, string>();
  const zonesToNarrow = new QuietBatch<string>({
    clock: d.clock,
    // One site's failover (the one this follows) is no storm: its zone follows at the first look.
    quietForMs: () => d.siteNews.quietButForOneSiteMs(),
    quietMs: ZONE_QUIET_MS,
    capMs: ZONE_CAP_MS,
    firstLookMs: 50,
    run: (zones) => zones.forEach((z) => zoneHere(z) && host.tellLocal('dns-zone', z, { type: 'refresh' })),
  });
  await d.routes.subscribe((s) => {
    const hostname = s.data?.hostname ?? hostOf.get(s.id);
    if (s.data?.hostname) hostOf.set(s.id, s.data.hostname);
    else hostOf.delete(s.id);
    if (!hostname) {
      if (!s.data) host.broadcastLocal('dns-zone', { type: 'refresh' }); // a deletion of a route never seen: any zone may have named it
      return;
    }
    zonesToNarrow.add(enclosingNames(hostname).filter(zoneHere));
  });
  const goneCheck = new GoneNodes({
    clock: d.clock,
    quietForMs: () => d.siteNews.quietForMs(),
    quietMs: GONE_QUIET_MS,
    capMs: GONE_CAP_MS,
    check: (nodes) => {
      for (const node of nodes) {
        if (d.membership.member(node)) continue; // back under a new incarnation: its join recomputed every route
        for (const id of index.naming(node)) host.tellLocal('resource', id, { type: 'refresh' });
      }
    },
  });
  // Health reports and site moves change where traffic may go: the resources with a target on that site recompute.
  const refresh = (m: { siteId: string }) => {
    d.siteNews.heard(m.siteId);
    for (const id of index.bySite(m.siteId)) host.tellLocal('resource', id, { type: 'refresh', siteId: m.siteId });
  };
  await d.valkey.subscribe('health', refresh);
  await d.valkey.subscribe('sites', refresh);
  await d.valkey.subscribe('ownership', (m) => {
    for (const siteId of sitesReleased(m)) refresh({ siteId });
  });
  const refreshAll = () => {
    host.broadcastLocal('resource', { type: 'refresh' });
    host.broadcastLocal('dns-zone', { type: 'refresh' });
  };
  // Only when the members changed: the view is announced after every read, once a second,
  // and waking every route and zone that often cost Valkey reads in proportion to resources.
  // A join recomputes every route (a standby on the joined node counts from now on); a death
  // or leave recomputes the zones (their records name live nodes) and, later, the routes
  // still naming the node gone (supervisors/gone-nodes.ts).
  // Membership announces each join, death and leave just before the view they make.
  let joined = false;
  let gone: string[] = [];
  d.membership.on('change', (e: MembershipEvent) => (e.type === 'join' ? (joined = true) : gone.push(e.member.id)));
  d.membership.on('view', (changed: boolean) => {
    const [join, left] = [joined, gone];
    [joined, gone] = [false, []];
    if (!changed) return;
    if (join) return refreshAll();
    host.broadcastLocal('dns-zone', { type: 'refresh' });
    goneCheck.gone(left);
  });
  // Announcements (site moves, health) sent while the subscriber was away are lost: every
  // route and zone recomputes from what Valkey holds now.
  d.valkey.onResubscribed(refreshAll);
  return {
    stop: () => {
      zonesToNarrow.stop();
      goneCheck.stop();
      replay.stop();
    },
  };
}
