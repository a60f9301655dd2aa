// Every pub/sub channel of the cluster, each with the schema of what it carries. Publishers
// are typed by it; subscribers get only messages that passed it (persistence/valkey.ts drops
// and counts the rest), so a node of another version or a stray PUBLISH cannot feed a handler
// a shape it does not expect.
import { z } from 'zod';
import { RouteSchema } from './route.ts';
import { ZoneDataSchema } from './zone.ts';

const id = z.string().min(1).max(255);

export const VersionSchema = z.object({ epoch: z.number().int().nonnegative(), seq: z.number().int().nonnegative() });

/** A versioned snapshot an actor publishes (no data: a tombstone). */
export const snapshotSchema = <T extends z.ZodTypeAny>(data: T) => z.object({ id, version: VersionSchema, data: data.optional() });

export const CHANGE_KINDS = ['org', 'user', 'site', 'domain', 'resource', 'target', 'api_key', 'member', 'resource_session', 'identity_provider'] as const;

/** An admin write, announced after its commit. */
export const ChangeSchema = z.object({
  kind: z.enum(CHANGE_KINDS),
  id: z.string(),
  orgId: z.string().nullable(),
  action: z.enum(['created', 'updated', 'deleted']),
  /** The change's audit row: nodes that got the announcement need not replay it from the log. */
  auditId: z.number().int().optional(),
  /**
   * What the change touches, where the writer knows it: then only these actors are told
   * (sites whose connector configuration, resources whose route, DNS names whose zone may
   * differ). Absent: every local actor of the kinds the change concerns, as a replayed
   * change is (the cost of that grows with the number of actors, on every node).
   */
  touches: z.object({ siteIds: z.array(z.string()).max(1000).optional(), resourceIds: z.array(z.string()).max(1000).optional(), names: z.array(z.string()).max(100).optional() }).strict().optional(),
});
export type ChangeTouches = NonNullable<z.infer<typeof ChangeSchema>['touches']>;
export type Change = z.infer<typeof ChangeSchema>;

export const MemberRecordSchema = z.object({
  id,
  incarnation: z.string(),
  admin: z.string(),
  peer: z.string(),
  /** Addresses public clients reach the node at (DNS answers name them). */
  addresses: z.array(z.string()),
  startedAt: z.number(),
});
export type MemberRecord = z.infer<typeof MemberRecordSchema>;

/** An actor's ownership entry (`owner:<kind>:<id>` in Valkey). */
export interface Owner {
  node: string;
  incarnation: string;
  epoch: number;
}

export const OwnershipChangeSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('claimed'), kind: id, ids: z.array(id), node: id, incarnation: z.string(), epochs: z.array(z.number().int()) }),
  z.object({ type: z.literal('released'), kind: id, ids: z.array(id), node: id, incarnation: z.string() }),
]);
export type OwnershipChange = z.infer<typeof OwnershipChangeSchema>;

export const TargetHealthSchema = z.array(z.object({ id: z.string(), healthy: z.boolean() })).max(10_000);

export const CHANNELS = {
  /** Admin writes (supervisors/change-routing.ts decides which actors hear of them). */
  changes: ChangeSchema,
  /** A site's connector reported target health. */
  health: z.object({ siteId: id, targets: TargetHealthSchema }),
  /** A site's tunnel moved (node null: offline). */
  sites: z.object({ siteId: id, node: id.nullable() }),
  /** A certificate was issued or renewed: every node reloads it. */
  certs: z.object({ hostname: z.string().min(1).max(253) }),
  ownership: OwnershipChangeSchema,
  /** Hints only: the lease keys are the truth. */
  membership: z.object({ type: z.enum(['join', 'dead', 'leave']), member: MemberRecordSchema }),
  /** Route snapshots (resource actors), announced by the store's compare-and-set script. */
  routes: snapshotSchema(RouteSchema),
  /** Zone snapshots (dns-zone actors), likewise. */
  zones: snapshotSchema(ZoneDataSchema),
} as const;

export type ChannelName = keyof typeof CHANNELS;
export type ChannelMessage<C extends ChannelName> = z.infer<(typeof CHANNELS)[C]>;
/** Channels that carry versioned snapshots. */
export type SnapshotChannel = 'routes' | 'zones';
