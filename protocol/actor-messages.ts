// One message schema per actor kind. The actor host validates every message where it is
// delivered (a local ask, a broadcast, or an ask that arrived over the peer link), so a
// receive only ever sees a message of its own union; `ask` is typed by kind.
import { z } from 'zod';
import type { ControlSession } from './connector.ts';

const name = z.string().min(1).max(253);

export const ProbeMsgSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ping') }),
  z.object({ type: z.literal('record'), msgId: z.string().min(1).max(200) }),
  z.object({ type: z.literal('beat') }),
  z.object({ type: z.literal('crash'), reason: z.string().max(200).optional() }),
]);

/** A live control session exists only in the process holding the connector's WebSocket. */
const Session = z.custom<ControlSession>((v) => typeof v === 'object' && v !== null && typeof (v as ControlSession).send === 'function' && typeof (v as ControlSession).close === 'function', 'a local control session');

export const SiteMsgSchema = z.discriminatedUnion('type', [
  /** `generation`: the secret generation the connector's token was issued under. */
  /** `wireguardKey`: the connector asked for WireGuard with this public key. */
  z.object({ type: z.literal('attach'), session: Session, generation: z.number().int().positive(), wireguardKey: z.string().max(64).optional() }),
  z.object({ type: z.literal('detach'), sessionId: z.string() }),
  /** The connector of `sessionId` brought up this data plane (after a WireGuard offer or refusal). */
  z.object({ type: z.literal('data-plane'), sessionId: z.string(), transport: z.enum(['websocket', 'wireguard']) }),
  z.object({ type: z.literal('health'), targets: z.array(z.object({ id: z.string(), healthy: z.boolean() })).max(1000) }),
  z.object({ type: z.literal('config-changed') }),
  /** Another node asks whether a standby connection under a token of this generation may stand by for the site. */
  z.object({ type: z.literal('standby'), generation: z.number().int().positive() }),
  z.object({ type: z.literal('status') }),
]);

export const ResourceMsgSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('reload') }),
  z.object({ type: z.literal('refresh'), siteId: z.string().optional() }),
  z.object({ type: z.literal('status') }),
]);

export const DnsZoneMsgSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('reload') }),
  z.object({ type: z.literal('refresh') }),
  z.object({ type: z.literal('acme-set'), name, value: z.string().max(512) }),
  z.object({ type: z.literal('acme-clear'), name, value: z.string().max(512) }),
  /** Look for the proof of a pending domain now. */
  z.object({ type: z.literal('verify') }),
  z.object({ type: z.literal('status') }),
]);

export const CertIssuerMsgSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('check') }),
  z.object({ type: z.literal('obtain'), hostname: name }),
  z.object({ type: z.literal('status') }),
]);

export const ACTOR_MESSAGES = {
  probe: ProbeMsgSchema,
  site: SiteMsgSchema,
  resource: ResourceMsgSchema,
  'dns-zone': DnsZoneMsgSchema,
  'cert-issuer': CertIssuerMsgSchema,
} as const;

export type ActorKindName = keyof typeof ACTOR_MESSAGES;
export type ActorMessage<K extends ActorKindName> = z.infer<(typeof ACTOR_MESSAGES)[K]>;
export type ProbeMsg = ActorMessage<'probe'>;
export type SiteMsg = ActorMessage<'site'>;
export type ResourceMsg = ActorMessage<'resource'>;
export type DnsZoneMsg = ActorMessage<'dns-zone'>;
export type CertIssuerMsg = ActorMessage<'cert-issuer'>;

export function isActorKind(kind: string): kind is ActorKindName {
  return Object.hasOwn(ACTOR_MESSAGES, kind);
}

/** An actor's identity as one string: its placement hash input and its local registry key. */
export function actorKey(kind: string, id: string): string {
  return `${kind}/${id}`;
}
