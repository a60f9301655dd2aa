// The dns-zone actor: one per zone (a domain), placed by rendezvous hashing. It computes the
// zone's records from its resources, where their sites' tunnels are (the route snapshots),
// target health and the live nodes, keeps a monotonic SOA serial (a fenced write to
// PostgreSQL whenever the records change), holds ACME challenge TXT records, and publishes
// the zone as a versioned snapshot that every node's DNS gateway answers from.
//
// A resource's A/AAAA records are the public addresses of the live nodes holding a tunnel
// to one of its healthy, enabled targets (no extra hop), else of every live node (any node
// forwards). Each live node with a public address is a name server: ns-<node>.<zone>.
import { isIP } from 'node:net';
import { z } from 'zod';
import type { Route } from '../protocol/route.ts';
import { sql, withDb, type DatabasePool } from '../persistence/db.ts';
import { fencedWrite, fenceHolds, fenceMoved } from '../persistence/epochs.ts';
import type { Snapshot } from '../persistence/snapshots.ts';
import type { DomainProof, RecordData, ZoneData } from '../protocol/zone.ts';
import type { DnsZoneMsg } from '../protocol/actor-messages.ts';
import { unknownMessage, type Behavior } from './runtime.ts';
import type { Clock } from '../core/clock.ts';
import { ClusterError } from '../core/errors.ts';
import { audit } from '../persistence/audit.ts';

export type { DnsZoneMsg };

export interface DnsZoneDeps {
  db: DatabasePool;
  /** Seconds. */
  recordTtl: number;
  /** CA domains allowed to issue for the zone (CAA "issue"); none: no CAA record. */
  caaIssuers: string[];
  liveNodes(): Array<{ id: string; addresses: string[] }>;
  routes(resourceIds: string[]): Promise<Map<string, Route>>;
  acme: {
    all(zone: string): Promise<Record<string, string[]>>;
    set(zone: string, name: string, values: string[]): Promise<void>;
  };
  publish(snapshot: Snapshot<ZoneData>): Promise<boolean>;
  /** The proof the operator's resolvers show that the org controls the domain, if any. */
  findProof(zone: string, token: string, nameServers: string[]): Promise<DomainProof | undefined>;
  /** Tells every node that the domain changed (it was verified). */
  announce(change: { domainId: string; orgId: string; auditId: number }): Promise<void>;
  /** How often a pending domain's proof is looked for; 0: never by itself. */
  verifyEveryMs: number;
  nodeId: string;
  clock: Clock;
}

interface Stored {
  domainId: string;
  orgId: string;
  serial: number;
  /** Pending: only the zone's NS records are served until the org proves control. */
  status: 'pending' | 'verified';
  token: string;
  hosts: Array<{ resourceId: string; hostname: string }>;
}

export interface DnsZoneState {
  stored: Stored | null;
  acme: Record<string, string[]>;
  /** Records last published (without serial), to tell whether anything changed. */
  published: string | undefined;
  serial: number;
}

const domainRow = z.object({ id: z.string(), org_id: z.string(), soa_serial: z.coerce.number(), status: z.enum(['pending', 'verified']), verification_token: z.string() });
const hostRow = z.object({ id: z.string(), hostname: z.string() });

export async function dnsZoneCatalog(db: DatabasePool): Promise<string[]> {
  return [...(await db.anyFirst(sql.type(z.object({ name: z.string() }))`SELECT name FROM domains ORDER BY name`))];
}

async function load(db: DatabasePool, zone: string): Promise<Stored | null> {
  const d = await db.maybeOne(sql.type(domainRow)`SELECT id, org_id, soa_serial, status, verification_token FROM domains WHERE name = ${zone}`);
  if (!d) return null;
  if (d.status === 'pending') return { domainId: d.id, orgId: d.org_id, serial: d.soa_serial, status: d.status, token: d.verification_token, hosts: [] };
  const hosts = await db.any(sql.type(hostRow)`
    SELECT r.id, r.hostname FROM resources r
    WHERE r.domain_id = ${d.id} AND r.enabled AND r.protocol = 'http' AND r.hostname IS NOT NULL ORDER BY r.hostname`);
  return { domainId: d.id, orgId: d.org_id, serial: d.soa_serial, status: d.status, token: d.verification_token, hosts: hosts.map((h) => ({ resourceId: h.id, hostname: h.hostname })) };
}

/**
 * A zone's records (pure): NS and glue per live node with a public address, CAA per allowed
 * CA, A/AAAA per resource hostname (the live nodes holding a tunnel to a healthy, enabled
 * target; every live node when none does), and the ACME challenge TXT values.
 */
export function zoneRecords(z: {
  zone: string;
  /** Seconds. */
  ttl: number;
  caaIssuers: readonly string[];
  live: Array<{ id: string; addresses: string[] }>;
  hosts: Array<{ resourceId: string; hostname: string }>;
  routes: ReadonlyMap<string, Route>;
  acme: Record<string, string[]>;
}): Record<string, RecordData[]> {
  const { zone, ttl } = z;
  const live = z.live.filter((n) => n.addresses.length > 0).sort((a, b) => a.id.localeCompare(b.id));
  const addressRecords = (addresses: string[]): RecordData[] => addresses.map((a) => ({ type: isIP(a) === 6 ? 'AAAA' : 'A', ttl, data: a }) as RecordData);
  const out: Record<string, RecordData[]> = {};
  const add = (name: string, r: RecordData[]) => (out[name] = [...(out[name] ?? []), ...r]);
  add(zone, live.map((n) => ({ type: 'NS', ttl, data: `ns-${label(n.id)}.${zone}` })));
  for (const n of live) add(`ns-${label(n.id)}.${zone}`, addressRecords(n.addresses));
  for (const ca of z.caaIssuers) add(zone, [{ type: 'CAA', ttl, data: { flags: 0, tag: 'issue', value: ca } }]);
  const byId = new Map(live.map((n) => [n.id, n]));
  for (const h of z.hosts) {
    const route = z.routes.get(h.resourceId);
    const serving = new Set((route?.targets ?? []).filter((t) => t.enabled && t.healthy).map((t) => route!.owners[t.siteId]).filter((n): n is string => n !== undefined && byId.has(n)));
    const nodes = serving.size ? live.filter((n) => serving.has(n.id)) : live;
    add(h.hostname, addressRecords(nodes.flatMap((n) => n.addresses)));
  }
  for (const [name, values] of Object.entries(z.acme)) if (values.length) add(name, [{ type: 'TXT', ttl: Math.min(ttl, 60), data: values }]);
  return out;
}

const label = (nodeId: string) => nodeId.toLowerCase().replace(/[^a-z0-9-]/g, '-');

export function dnsZoneBehavior(deps: DnsZoneDeps, zone: string, epoch: number): Behavior<DnsZoneState, DnsZoneMsg> {
  const fence = { kind: 'dns-zone', id: zone, epoch };
  let seq = 0; // outside the state: a restart in the same epoch keeps counting up

  async function records(stored: Stored, acme: Record<string, string[]>): Promise<Record<string, RecordData[]>> {
    // A pending zone serves its name servers only (so a delegation can be checked), nothing
    // an org could use to take a name: no addresses, no challenge records, no CAA.
    if (stored.status === 'pending') return zoneRecords({ zone, ttl: deps.recordTtl, caaIssuers: [], live: deps.liveNodes(), hosts: [], routes: new Map(), acme: {} });
    const routes = await deps.routes(stored.hosts.map((h) => h.resourceId));
    return zoneRecords({ zone, ttl: deps.recordTtl, caaIssuers: deps.caaIssuers, live: deps.liveNodes(), hosts: stored.hosts, routes, acme });
  }

  /** Looks for the proof of a pending domain; on finding it, marks the domain verified (fenced) and tells every node. */
  async function verify(state: DnsZoneState): Promise<{ state: DnsZoneState; proof: DomainProof | undefined }> {
    const stored = state.stored;
    if (!stored || stored.status === 'verified') return { state, proof: undefined };
    const nameServers = Object.keys(zoneRecords({ zone, ttl: 1, caaIssuers: [], live: deps.liveNodes(), hosts: [], routes: new Map(), acme: {} })).filter((n) => n !== zone);
    const proof = await deps.findProof(zone, stored.token, nameServers);
    if (!proof) return { state, proof };
    const auditId = await fencedWrite(deps.db, fence, async (tx) => {
      await tx.query(sql.unsafe`UPDATE domains SET status = 'verified', verified_at = now(), verified_by = ${proof}, version = version + 1 WHERE id = ${stored.domainId} AND status = 'pending'`);
      return audit(tx, { actorType: 'node', actorId: deps.nodeId, orgId: stored.orgId, action: 'domain.verified', targetType: 'domain', targetId: stored.domainId, nodeId: deps.nodeId, details: { proof } });
    });
    await deps.announce({ domainId: stored.domainId, orgId: stored.orgId, auditId }).catch(() => {}); // the audit-log replay finds it otherwise
    return { state: await publish({ ...state, stored: await load(deps.db, zone) }), proof };
  }

  async function publish(state: DnsZoneState): Promise<DnsZoneState> {
    if (!state.stored) {
      if (state.published === 'deleted') return state;
      await deps.publish({ id: zone, version: { epoch, seq: ++seq } });
      return { ...state, published: 'deleted' };
    }
    const recs = await records(state.stored, state.acme);
    const json = JSON.stringify(recs);
    if (json === state.published) return state;
    // Records changed (or a new owner starts, not knowing what its predecessor served): the
    // serial moves forward, durably, and only for the current owner.
    const serial = await withDb(() =>
      deps.db.maybeOneFirst(sql.type(z.object({ soa_serial: z.coerce.number() }))`
        UPDATE domains SET soa_serial = soa_serial + 1 WHERE id = ${state.stored!.domainId} AND ${fenceHolds(fence)} RETURNING soa_serial`),
    );
    if (serial === null) throw (await fenceMoved(deps.db, fence)) ?? new Error(`domain ${zone} is gone; reloading`);
    const first = recs[zone]?.find((r) => r.type === 'NS')?.data as string | undefined;
    const data: ZoneData = {
      zone,
      serial,
      soa: { mname: first ?? `ns.${zone}`, rname: `hostmaster.${zone}`, refresh: 3600, retry: 600, expire: 1_209_600, minimum: deps.recordTtl, ttl: deps.recordTtl },
      records: recs,
    };
    await deps.publish({ id: zone, version: { epoch, seq: ++seq }, data });
    return { ...state, published: json, serial };
  }

  // Outside the state: a restart re-runs init without `stopped`, and must not leak a timer.
  let timer: { cancel(): void } | undefined;
  return {
    async init(ctx) {
      const stored = await load(deps.db, zone);
      timer?.cancel();
      if (deps.verifyEveryMs > 0) timer = deps.clock.setInterval(() => ctx.self({ type: 'verify' }), deps.verifyEveryMs);
      return publish({ stored, acme: await deps.acme.all(zone), published: undefined, serial: stored?.serial ?? 0 });
    },
    async receive(state, msg, ctx) {
      switch (msg.type) {
        case 'reload':
          return publish({ ...state, stored: await load(deps.db, zone) });
        case 'verify': {
          const { state: next, proof } = await verify(state);
          ctx.reply({ zone, status: next.stored?.status ?? 'deleted', proof: proof ?? null });
          return next;
        }
        case 'refresh':
          return publish(state);
        case 'acme-set':
        case 'acme-clear': {
          const name = msg.name.toLowerCase();
          if (name !== zone && !name.endsWith(`.${zone}`)) throw new ClusterError('CLUSTER_ERR_ACTOR_BAD_MESSAGE', `${name} is not in zone ${zone}`, { kind: 'dns-zone', id: zone, reason: 'name outside the zone' });
          const cur = state.acme[name] ?? [];
          const values = msg.type === 'acme-set' ? [...new Set([...cur, msg.value])] : cur.filter((v) => v !== msg.value);
          await deps.acme.set(zone, name, values);
          const next = await publish({ ...state, acme: { ...state.acme, [name]: values } });
          ctx.reply({ serial: next.serial });
          return next;
        }
        case 'status':
          ctx.reply({ zone, epoch, serial: state.serial, published: state.published !== undefined && state.published !== 'deleted' });
          return state;
        default:
          return unknownMessage(msg);
      }
    },
    stopped() {
      timer?.cancel();
    },
  };
}
