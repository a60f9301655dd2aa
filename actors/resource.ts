// The resource actor: one per resource, placed by rendezvous hashing. It keeps the resource's
// route (hostname or port -> targets on one or more sites, each target's reported health, and
// the node holding each site's tunnel) and publishes it as a versioned snapshot that every
// node's ingress mirrors. It recomputes on admin edits (reload from PostgreSQL), on health
// reports and site moves (refresh from Valkey), and when nodes join or die. The route carries
// the resource's access policy, so every node decides who may reach it from memory.
import { z } from 'zod';
import { quietWait } from '../core/quiet-wait.ts';
import { loadAccessPolicies } from '../persistence/access-policy.ts';
import { pooledLoader, uuidsOnly } from '../persistence/batch-load.ts';
import { sql, type DatabasePool } from '../persistence/db.ts';
import type { Snapshot } from '../persistence/snapshots.ts';
import type { Route } from '../protocol/route.ts';
import type { ResourceMsg } from '../protocol/actor-messages.ts';
import { unknownMessage, type Behavior } from './runtime.ts';

export type { ResourceMsg };

export interface ResourceDeps {
  db: DatabasePool;
  /** Stores and announces the snapshot (compare-and-set on the version). */
  publish(snapshot: Snapshot<Route>): Promise<boolean>;
  /** Live node holding each site's tunnel. */
  siteOwners(siteIds: string[]): Promise<Map<string, string>>;
  /** Reported health by target id, for the given sites. */
  health(siteIds: string[]): Promise<Map<string, boolean>>;
  /** Node holding each site's standby tunnel, where one has one. */
  standbys?(siteIds: string[]): Promise<Map<string, string>>;
  /** Told the sites and hostname the route is about to use (null: none any more), before their state is read, so no news of them is missed. */
  track?(route: { hostname: string | null; siteIds: string[] } | null): void;
  /** Told the nodes the route just read names (owners and standbys): a node's death then finds the routes naming it. */
  named?(nodes: string[]): void;
  /** Pauses between reads of a route naming a site with no owner (RECHECK_MS, then RECHECK_STEADY_MS); tests shorten them. */
  recheck?: { ladderMs: readonly number[]; steadyMs: number; quietMs?: number; quietCapMs?: number };
  /** How long since this node last heard a site move (supervisors/site-news.ts): a read due meanwhile waits for RECHECK_QUIET_MS of quiet. */
  quietForMs?: () => number;
}

export interface ResourceState {
  /** The resource as stored; null once deleted. */
  base: Omit<Route, 'owners' | 'standbys'> | null;
  published: string | undefined;
}

/**
 * A route with an enabled target whose site has no live owner is read again after these
 * pauses: the site's move may have been announced while this actor could not hear it (its
 * node rejoining after a fence, the actor respawning elsewhere); 88 resources stayed unrouted
 * for 120 s with every site online after a double fence in a 10,000-site storm.
 */
export const RECHECK_MS = [1000, 3000, 10_000, 30_000];
/**
 * Then every minute (a fifth either way, so many offline sites' resources do not read
 * together) for as long as the route stays so: after the ladder, a fenced storm (2026-12-06)
 * still left one resource unrouted for over 120 s with every site online, its cause not found.
 * The floor under whatever news is lost: at most one Valkey round trip a minute for each
 * resource of a site that is offline.
 */
export const RECHECK_STEADY_MS = 60_000;
/**
 * A read that falls due while sites are moving waits until none has for this long, or
 * RECHECK_QUIET_CAP_MS at most: in a reconnect storm the moves' own announcements recompute
 * the routes, and the ladder read every route of a site not yet moved up to three times in a
 * 30 s storm (none in the storm since, counted in a 4,000-site run).
 */
export const RECHECK_QUIET_MS = 2000;
export const RECHECK_QUIET_CAP_MS = 30_000;

const row = z.object({
  resource_id: z.string(), org_id: z.string(), protocol: z.enum(['http', 'tcp', 'udp']), hostname: z.string().nullable(), proxy_port: z.number().nullable(), tls: z.boolean(), enabled: z.boolean(),
  targets: z.array(z.object({ id: z.string(), siteId: z.string(), host: z.string(), port: z.number(), scheme: z.enum(['http', 'https', 'tcp', 'udp']), enabled: z.boolean(), weight: z.number() })),
});

export async function resourceCatalog(db: DatabasePool): Promise<string[]> {
  return [...(await db.anyFirst(sql.type(z.object({ id: z.string() }))`SELECT id FROM resources ORDER BY id`))];
}

type Base = NonNullable<ResourceState['base']>;

/** The resource actors spawned in one turn (a node died) load in two statements. */
const loadResources = pooledLoader((db: DatabasePool, ids: string[]) => loadMany(db, uuidsOnly(ids)));

/** null once deleted. */
const load = async (db: DatabasePool, id: string): Promise<ResourceState['base']> => (await loadResources(db, id)) ?? null;

async function loadMany(db: DatabasePool, ids: string[]): Promise<Map<string, Base>> {
  const rows = await db.any(sql.type(row)`
    SELECT r.id AS resource_id, r.org_id, r.protocol, r.hostname, r.proxy_port, r.tls, r.enabled,
      COALESCE(json_agg(json_build_object('id', t.id, 'siteId', t.site_id, 'host', t.host, 'port', t.port, 'scheme', t.scheme, 'enabled', t.enabled, 'weight', t.weight) ORDER BY t.id)
        FILTER (WHERE t.id IS NOT NULL), '[]') AS targets
    FROM resources r LEFT JOIN targets t ON t.resource_id = r.id WHERE r.id = ANY(${sql.array(ids, 'uuid')}) GROUP BY r.id`);
  // HTTP resources only: a raw TCP/UDP stream has no request to check.
  const http = rows.filter((r) => r.protocol === 'http').map((r) => r.resource_id);
  const policies = http.length ? await loadAccessPolicies(db, http) : new Map();
  return new Map(rows.map((r) => {
    const access = policies.get(r.resource_id);
    return [r.resource_id, {
      ...(access ? { access } : {}),
      resourceId: r.resource_id, orgId: r.org_id, protocol: r.protocol, hostname: r.hostname, port: r.proxy_port, tls: r.tls, enabled: r.enabled,
      targets: r.targets.map((t) => ({ ...t, healthy: true })),
    }];
  }));
}

export function resourceBehavior(deps: ResourceDeps, id: string, epoch: number): Behavior<ResourceState, ResourceMsg> {
  // Outside the state so a restart (same epoch) keeps counting up.
  let seq = 0;
  let recheck: NodeJS.Timeout | undefined;
  let rechecks = 0;
  /** Schedules the next read of a route that names a site with no live owner; forgets the ladder once all are owned. */
  function recheckIfOrphaned(route: Route | undefined, ctx: { self: (msg: ResourceMsg) => void }) {
    const orphaned = Boolean(route?.enabled && route.targets.some((t) => t.enabled && route.owners[t.siteId] === undefined));
    if (!orphaned) {
      rechecks = 0;
      clearTimeout(recheck);
      recheck = undefined;
      return;
    }
    if (recheck) return;
    const { ladderMs, steadyMs, quietMs = RECHECK_QUIET_MS, quietCapMs = RECHECK_QUIET_CAP_MS } = deps.recheck ?? { ladderMs: RECHECK_MS, steadyMs: RECHECK_STEADY_MS };
    const pause = ladderMs[rechecks++] ?? steadyMs * (0.8 + Math.random() * 0.4);
    const latest = Date.now() + pause + quietCapMs;
    const due = () => {
      const wait = quietWait(deps.quietForMs?.() ?? Infinity, quietMs, Date.now(), latest);
      if (wait > 0) {
        recheck = setTimeout(due, wait);
        recheck.unref();
        return;
      }
      recheck = undefined;
      ctx.self({ type: 'refresh' });
    };
    recheck = setTimeout(due, pause);
    recheck.unref();
  }
  const sites = (base: ResourceState['base']) => [...new Set(base?.targets.map((t) => t.siteId) ?? [])];

  /** Adds health and owners, publishes if anything changed, and reads it again later while a site has no owner; returns what was published. */
  async function publish(state: ResourceState, base: ResourceState['base'], ctx: { self: (msg: ResourceMsg) => void }): Promise<ResourceState> {
    let data: Route | undefined;
    deps.track?.(base ? { hostname: base.hostname, siteIds: sites(base) } : null);
    if (base) {
      const ids = sites(base);
      const [owners, health, standbys] = await Promise.all([deps.siteOwners(ids), deps.health(ids), deps.standbys?.(ids) ?? new Map<string, string>()]);
      // A standby on the owner's own node is no second path (a promotion in progress).
      const second = [...standbys].filter(([siteId, node]) => owners.get(siteId) !== node);
      data = { ...base, targets: base.targets.map((t) => ({ ...t, healthy: health.get(t.id) ?? true })), owners: Object.fromEntries(owners), ...(second.length ? { standbys: Object.fromEntries(second) } : {}) };
      deps.named?.([...new Set([...owners.values(), ...second.map(([, node]) => node)])]);
    }
    recheckIfOrphaned(data, ctx);
    const json = JSON.stringify(data ?? null);
    if (json === state.published) return { base, published: json };
    await deps.publish({ id, version: { epoch, seq: ++seq }, data });
    return { base, published: json };
  }

  return {
    async init(ctx) {
      return publish({ base: null, published: undefined }, await load(deps.db, id), ctx);
    },
    async receive(state, msg, ctx) {
      switch (msg.type) {
        case 'reload':
          return publish(state, await load(deps.db, id), ctx);
        case 'refresh':
          if (msg.siteId && !sites(state.base).includes(msg.siteId)) return state;
          return publish(state, state.base, ctx);
        case 'status':
          ctx.reply({ epoch, seq, route: state.published ? JSON.parse(state.published) : null });
          return state;
        default:
          return unknownMessage(msg);
      }
    },
    async stopped() {
      clearTimeout(recheck);
      deps.track?.(null);
    },
  };
}
