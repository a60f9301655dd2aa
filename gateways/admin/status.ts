// The admin API's status queries: live nodes with their lease age and actor counts, sites'
// connection and health, and what the ingress serves for resources. Read from Valkey (one
// round trip each) and from the nodes themselves; never from an actor's mailbox.
import type { Route } from '../../protocol/route.ts';
import { leaseRemaining, readListenProblems, readSiteStates } from '../../persistence/actor-stores.ts';
import type { SnapshotStore } from '../../persistence/snapshots.ts';
import type { Valkey } from '../../persistence/valkey.ts';
import type { MemberRecord, Owner } from '../../protocol/channels.ts';
import type { ApiDeps, ResourceStatus, SiteStatus } from './http.ts';

export interface StatusSources {
  valkey: Valkey;
  routes: SnapshotStore<'routes'>;
  leaseTtlMs: number;
  /** Live members in this node's view. */
  live(): MemberRecord[];
  /** Owners of actors of one kind (a site's owner holds its connector). */
  ownersOf(kind: 'site', ids: string[]): Promise<Map<string, Owner>>;
  /** A node's actor counts by kind (asked over the peer link, or read locally); null when it does not answer. */
  actorCounts(member: MemberRecord): Promise<Record<string, number> | null>;
}

/** What the edge enforces for a resource, as published with its route (no token hashes). */
function enforced(p: Route['access']): ResourceStatus['access'] {
  if (!p) return null;
  const methods = [p.password && 'password', p.pin && 'pin', p.sso && 'sso', p.email && 'email', p.basicAuth && 'basic', p.links.length > 0 && 'link'].filter((m): m is string => typeof m === 'string');
  return { blockAccess: p.blockAccess, methods, ssoRoles: p.sso?.roles ?? [], ssoProviderId: p.sso?.providerId ?? null, rules: p.rules.length, shareLinks: p.links.length };
}

export function statusQueries(s: StatusSources): Pick<ApiDeps, 'nodes' | 'siteStatus' | 'resourceStatus'> {
  return {
    async nodes() {
      const live = s.live();
      const [remaining, counts] = await Promise.all([leaseRemaining(s.valkey, live.map((m) => m.id)), Promise.all(live.map((m) => s.actorCounts(m)))]);
      return live.map((m, i) => {
        const pttl = remaining[i];
        return { ...m, leaseAgeMs: pttl !== undefined && pttl >= 0 ? s.leaseTtlMs - pttl : null, actors: counts[i] ?? null };
      });
    },
    // A site is online where its site actor runs (placed where its connector is connected).
    async siteStatus(siteIds) {
      const owners = await s.ownersOf('site', siteIds).catch(() => new Map<string, Owner>());
      const states = await readSiteStates(s.valkey, siteIds).catch(() => new Map<string, never>());
      return new Map(siteIds.map((id): [string, SiteStatus] => {
        const state = states.get(id);
        const session = owners.has(id) ? state?.session : null;
        return [id, {
          online: owners.has(id),
          node: owners.get(id)?.node ?? null,
          connectedSince: session ? new Date(session.since).toISOString() : null,
          transport: session?.transport ?? null,
          wireguard: null,
          targets: (state?.health ?? []).map((h) => ({ targetId: h.id, healthy: h.healthy })),
        }];
      }));
    },
    async resourceStatus(ids) {
      const out = new Map<string, ResourceStatus>();
      const [snapshots, problems] = await Promise.all([
        s.routes.getMany(ids).catch(() => new Map<string, never>()),
        readListenProblems(s.valkey, ids).catch(() => new Map<string, Record<string, string>>()),
      ]);
      // A route may still name a node that died until its site moves (supervisors/gone-nodes.ts): a dead owner is no owner.
      const live = new Set(s.live().map((m) => m.id));
      for (const id of ids) {
        const route = snapshots.get(id)?.data;
        if (!route) continue;
        const targets = route.targets.map((t) => {
          const node = route.owners[t.siteId];
          return { targetId: t.id, siteId: t.siteId, enabled: t.enabled, healthy: t.healthy, siteOnline: node !== undefined && live.has(node), node: node !== undefined && live.has(node) ? node : null };
        });
        const servingNodes = [...new Set(targets.filter((t) => t.enabled && t.healthy && t.node).map((t) => t.node!))].sort();
        out.set(id, { published: true, servingNodes, targets, listenProblems: problems.get(id) ?? {}, access: enforced(route.access) });
      }
      return out;
    },
  };
}
