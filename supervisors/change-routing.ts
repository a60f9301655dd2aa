// Which news reaches which actors on this node. Admin writes (announced on `changes`, or
// found again in the audit log when the announcement was lost), route snapshots, health
// reports, site moves and membership views each wake the local actors whose output depends
// on them; a new or deleted resource, org or domain also moves placement.
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import type { DatabasePool } from '../persistence/db.ts';
import type { SnapshotStore } from '../persistence/snapshots.ts';
import type { Valkey } from '../persistence/valkey.ts';
import type { ActorKindName, ActorMessage } from '../protocol/actor-messages.ts';
import type { ActorHost } from './actor-host.ts';
import { ChangeReplay } from './change-replay.ts';
import type { Membership } from './membership.ts';

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

export interface ChangeRoutingDeps {
  host: ActorHost;
  valkey: Valkey;
  db: DatabasePool;
  membership: Membership;
  routes: SnapshotStore<'routes'>;
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
  const { host } = d;
  const apply = (kind: string) => {
    const r = reactionsTo(kind);
    for (const { kind: k, msg } of r.tell) host.broadcastLocal(k, msg as never);
    if (r.replace) void host.reconcile();
    d.onChange?.(kind);
  };
  const replay = new ChangeReplay({ db: d.db, clock: d.clock, logger: d.logger, everyMs: d.replayEveryMs, lookBackMs: d.replayWindowMs, apply: (kinds) => kinds.forEach(apply) });
  await d.valkey.subscribe('changes', (m) => {
    if (m.auditId !== undefined) replay.announced(m.auditId);
    apply(m.kind);
  });
  await replay.start();
  // Zones follow their resources' routes (site moves, health) and the live nodes.
  await d.routes.subscribe(() => host.broadcastLocal('dns-zone', { type: 'refresh' }));
  // Health reports and site moves change where traffic may go.
  const refresh = (m: { siteId: string }) => host.broadcastLocal('resource', { type: 'refresh', siteId: m.siteId });
  await d.valkey.subscribe('health', refresh);
  await d.valkey.subscribe('sites', refresh);
  d.membership.on('view', () => {
    host.broadcastLocal('resource', { type: 'refresh' });
    host.broadcastLocal('dns-zone', { type: 'refresh' });
  });
  return { stop: () => replay.stop() };
}
