// Shared pieces of the REST API: dependencies, pagination, the write transaction (change +
// audit row, then notify), and mapping of database errors to coded API errors.
import { Type, type Static } from 'typebox';
import '@fastify/swagger'; // augments route schemas with tags and summary
import type { FastifyRequest } from 'fastify';
import { ClusterError } from '../../core/errors.ts';
import { audit, type AuditEntry } from '../../persistence/audit.ts';
import { withDb, type DatabasePool } from '../../persistence/db.ts';
import type { Sealer } from '../../persistence/sealed.ts';
import type { OidcSignIn } from '../identity/oidc.ts';
import type { Valkey } from '../../persistence/valkey.ts';
import type { DatabaseTransactionConnection, QuerySqlToken } from 'slonik';
import type { PortRange } from '../../core/config-fields.ts';
import type { Change, ChangeTouches, MemberRecord } from '../../protocol/channels.ts';
import type { ZoneData } from '../../protocol/zone.ts';
import type { SiteTunnelStats } from '../../protocol/wireguard.ts';

export interface SiteStatus {
  online: boolean;
  /** Node holding the site's connector connection. */
  node: string | null;
  connectedSince: string | null;
  /** The data plane in use (null: offline, or not chosen yet). */
  transport: 'websocket' | 'wireguard' | null;
  /** The WireGuard peer on the node holding the site (single-site reads only; null in lists). */
  wireguard: SiteTunnelStats | null;
  /** Health its connector reported, per checked target. */
  targets: Array<{ targetId: string; healthy: boolean }>;
}

export interface ApiDeps {
  db: DatabasePool;
  valkey: Valkey;
  nodeId: string;
  /** Mark cookies Secure (served over TLS, or behind a TLS-terminating load balancer). */
  secureCookies: boolean;
  sessionTtlMs: number;
  /** Sign-in through OpenID Connect providers. */
  oidc: OidcSignIn;
  /** config admin.publicUrl: where providers send admins back. */
  publicUrl: string | undefined;
  /** Whether an SMTP server is configured (resources may use e-mail codes). */
  smtpConfigured: boolean;
  /** Seals secrets at rest under the cluster key (TOTP secrets). */
  sealer: Sealer;
  /** Ports TCP/UDP resources may take (config ingress.resourcePorts). */
  resourcePorts: PortRange;
  /** Live nodes with the age of their lease (time since its last renewal) and actors by kind (null: did not answer). */
  nodes(): Promise<Array<MemberRecord & { leaseAgeMs: number | null; actors: Record<string, number> | null }>>;
  /** Issues a short-lived connector token for a site's current secret generation (signed with the cluster secret). */
  connectorToken(siteId: string, generation: number): { token: string; expiresAt: number };
  /** Online status and owning node of sites, from the ownership registry (one round trip). */
  siteStatus(siteIds: string[]): Promise<Map<string, SiteStatus>>;
  /** The site's WireGuard peer stats, asked of the node holding it (null: none). */
  siteTunnel(siteId: string): Promise<SiteTunnelStats | null>;
  /** What the ingress serves for resources, from the route snapshots their actors published. */
  resourceStatus(resourceIds: string[]): Promise<Map<string, ResourceStatus>>;
  /** The live node running each actor of a kind (absent: none right now). */
  owners(kind: string, ids: string[]): Promise<Map<string, string>>;
  /** Subscribes to membership and ownership events as this node sees them; returns how to stop. */
  clusterEvents(listener: (e: ClusterEvent) => void): () => void;
  /** The zone's record set as its actor published it (what every node's DNS serves). */
  zone(name: string): Promise<ZoneData | undefined>;
  /** Asks the domain's zone actor to look for the proof of control now. */
  verifyDomain(name: string): Promise<unknown>;
  /** Asks the cert-issuer to obtain (or renew, if due) a hostname's certificate now. */
  obtainCertificate(hostname: string): Promise<unknown>;
}

/** What the dashboard's live cluster view is told. */
export type ClusterEvent =
  | { type: 'member'; change: 'join' | 'dead' | 'leave'; node: string; incarnation: string; reason?: string; at: number }
  | { type: 'ownership'; change: 'claimed' | 'released'; kind: string; ids: string[]; node: string; at: number };

export interface ResourceStatus {
  /** False until the resource's actor has published its route (or after it failed to). */
  published: boolean;
  /** Nodes that hold a tunnel to one of its usable targets (any node forwards to them). */
  servingNodes: string[];
  targets: Array<{ targetId: string; siteId: string; enabled: boolean; healthy: boolean; siteOnline: boolean; node: string | null }>;
  /** Nodes that could not listen on the resource's port, with why (TCP/UDP resources). */
  listenProblems: Record<string, string>;
  /** The access policy the edge enforces now (published with the route); null: public. */
  access: { blockAccess: boolean; methods: string[]; ssoRoles: string[]; ssoProviderId: string | null; rules: number; shareLinks: number } | null;
}

/** Names and free text: letters, digits, spaces and a little punctuation; no markup or quotes. */
export const Name = Type.String({ minLength: 1, maxLength: 100, pattern: "^[\\p{L}\\p{N}][\\p{L}\\p{N} ._()-]*$" });
export const Uuid = Type.String({ format: 'uuid' });
export const OrgParams = Type.Object({ orgId: Uuid }, { additionalProperties: false });
export const Version = Type.Integer({ minimum: 1, description: 'the version the change is based on' });
export const Page = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: '1-200, default 50' })),
    offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,7}$' })),
  },
  { additionalProperties: false },
);
export type PageQuery = Static<typeof Page>;

export function page(q: PageQuery): { limit: number; offset: number } {
  const limit = Math.min(200, Math.max(1, Number(q.limit ?? 50)));
  return { limit, offset: Number(q.offset ?? 0) };
}

/** Constraint name -> API field, for 409 answers that say which value is taken. */
const UNIQUE_FIELDS: Record<string, string> = {
  orgs_slug_key: 'slug',
  users_email_key: 'email',
  sites_org_name_key: 'name',
  domains_name_key: 'name',
  resources_hostname_key: 'hostname',
  resources_port_key: 'proxyPort',
  targets_unique_endpoint: 'host',
  org_members_pkey: 'userId',
  resource_rules_priority_key: 'priority',
};

export function mapDbError(err: unknown): unknown {
  const e = err as { code?: string; constraint?: string; cause?: { code?: string; constraint?: string } };
  const code = e.code ?? e.cause?.code;
  const constraint = e.constraint ?? e.cause?.constraint;
  if (code === '23505') return new ClusterError('CLUSTER_ERR_API_CONFLICT', `${UNIQUE_FIELDS[constraint ?? ''] ?? 'value'} is already taken`, { field: UNIQUE_FIELDS[constraint ?? ''] ?? 'value' });
  if (code === '23503') return new ClusterError('CLUSTER_ERR_API_CONFLICT', 'other objects still refer to this one (delete them first)', { field: 'references' });
  if (code === '23514' || code === '22P02') return new ClusterError('CLUSTER_ERR_API_VALIDATION', 'a value is out of range or of the wrong form', { field: constraint ?? 'value', problem: 'rejected by the schema' });
  return err;
}

export function actorOf(req: FastifyRequest): Pick<AuditEntry, 'actorType' | 'actorId'> {
  const p = req.principal;
  if (!p) return { actorType: 'system', actorId: null };
  return p.type === 'user' ? { actorType: 'user', actorId: p.userId } : { actorType: 'api_key', actorId: p.keyId };
}

export type { Change };

/**
 * One write: the change and its audit row in one transaction; the reply waits for the
 * commit; then actors are told through the `changes` channel.
 */
export async function write<T extends { id: string }>(
  deps: ApiDeps,
  req: FastifyRequest,
  change: Omit<Change, 'id'> & { id?: string },
  fn: (tx: DatabaseTransactionConnection) => Promise<T>,
  details?: (result: T) => Record<string, unknown>,
  /** What the change touches, known only from its result (else `change.touches`). */
  touchesOf?: (result: T) => ChangeTouches,
): Promise<T> {
  let result: T;
  let auditId: number;
  try {
    [result, auditId] = await withDb(() =>
      deps.db.transaction(async (tx) => {
        const r = await fn(tx);
        const a = await audit(tx, { ...actorOf(req), orgId: change.orgId, action: `${change.kind}.${change.action}`, targetType: change.kind, targetId: change.id ?? r.id, nodeId: deps.nodeId, details: details?.(r) });
        return [r, a] as const;
      }),
    );
  } catch (err) {
    throw mapDbError(err);
  }
  // Committed: a lost announcement is found again in the audit log (supervisors/change-replay.ts).
  const touches = touchesOf ? touchesOf(result) : change.touches;
  await deps.valkey.publish('changes', { ...change, id: change.id ?? result.id, auditId, touches } satisfies Change).catch(() => {});
  return result;
}

/**
 * A delete (or revoke) as one audited write: `query` removes the row and returns it; no row
 * means it did not exist here (404).
 */
export async function deleteOne(deps: ApiDeps, req: FastifyRequest, change: Omit<Change, 'action' | 'touches'> & { touches?: (row: Record<string, unknown>) => ChangeTouches }, what: string, query: QuerySqlToken): Promise<void> {
  const { touches, ...rest } = change;
  await write(deps, req, { ...rest, action: 'deleted' }, async (tx) => {
    const row = (await tx.maybeOne(query)) as Record<string, unknown> | null;
    if (!row) throw notFound(what);
    return { id: change.id, row };
  }, undefined, touches && ((r) => touches(r.row)));
}

export function notFound(what: string): ClusterError<'CLUSTER_ERR_API_NOT_FOUND'> {
  return new ClusterError('CLUSTER_ERR_API_NOT_FOUND', `no such ${what}`, {});
}

/** A versioned update found no row: 404 if it does not exist, else 409 with the current version. */
export function versionConflict(current: number | null, what: string): ClusterError {
  if (current === null) return notFound(what);
  return new ClusterError('CLUSTER_ERR_API_VERSION_CONFLICT', `${what} changed (now version ${current}); reload and retry`, { currentVersion: current });
}
