// A resource's access policy, published with its route (protocol/route.ts) so every node
// decides from memory who may reach it; and the claims a resource session cookie carries.
// No secret is published: share links travel as SHA-256 hashes of 256-bit tokens, and
// passwords and PINs stay in PostgreSQL (checked only when someone signs in).
import { z } from 'zod';

export const RULE_MATCHES = ['ip', 'cidr', 'path', 'country'] as const;
export const RULE_ACTIONS = ['allow', 'deny', 'pass'] as const;
export const ORG_ROLES = ['admin', 'member'] as const;
export const SESSION_METHODS = ['sso', 'password', 'pin', 'link', 'email'] as const;
/** An allowed e-mail address, or every address of a domain (`*@example.com`). */
export const EMAIL_PATTERN = /^(\*|[^@\s*]+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/;

export const AccessRuleSchema = z.object({
  id: z.string(),
  priority: z.number().int(),
  match: z.enum(RULE_MATCHES),
  value: z.string(),
  action: z.enum(RULE_ACTIONS),
});

export const ShareLinkSchema = z.object({
  id: z.string(),
  /** SHA-256 of the token, hex. */
  tokenHash: z.string().regex(/^[0-9a-f]{64}$/),
  pathPrefix: z.string().nullable(),
  /** Epoch ms; null: never. */
  expiresAt: z.number().nullable(),
  /** A browser that follows the link gets a resource session (the token leaves the URL). */
  makesSession: z.boolean(),
});

export const AccessPolicySchema = z.object({
  blockAccess: z.boolean(),
  /** Sign-in with a cluster account of the resource's org; empty lists: any member. */
  sso: z.object({ roles: z.array(z.enum(ORG_ROLES)), userIds: z.array(z.string()), /** Skip the portal's choice: straight to this identity provider. */ providerId: z.string().nullable().default(null) }).nullable(),
  password: z.boolean(),
  pin: z.boolean(),
  /** One-time codes sent to these addresses (`*@example.com`: a whole domain), lower case. */
  email: z.object({ allowed: z.array(z.string()).max(500) }).nullable(),
  /** HTTP basic auth with the resource password or a cluster account, for clients without redirects. */
  basicAuth: z.boolean(),
  links: z.array(ShareLinkSchema),
  /** When a password or PIN last changed (epoch ms): caches of checked credentials end with it. */
  secretsChangedAt: z.number(),
  /** Ordered by priority. */
  rules: z.array(AccessRuleSchema),
});

export type AccessRule = z.infer<typeof AccessRuleSchema>;
export type ShareLink = z.infer<typeof ShareLinkSchema>;
export type AccessPolicy = z.infer<typeof AccessPolicySchema>;
export type SessionMethod = (typeof SESSION_METHODS)[number];

/** What a resource session cookie says (signed by the cluster; see gateways/access/session-token.ts). */
export const SessionClaimsSchema = z.object({
  /** Session id (resource_sessions.id): what a revocation names. */
  sid: z.string().uuid(),
  /** The resource it is for: useless on any other. */
  rid: z.string().uuid(),
  method: z.enum(SESSION_METHODS),
  /** Expiry, epoch ms. */
  exp: z.number().int(),
  /** The share link it came from (method link). */
  link: z.string().uuid().optional(),
  /** The address a code was sent to (method email). */
  email: z.string().max(254).optional(),
  /** The cluster user (method sso). */
  user: z.object({ id: z.string().uuid(), email: z.string(), name: z.string(), role: z.enum(ORG_ROLES) }).optional(),
});
export type SessionClaims = z.infer<typeof SessionClaimsSchema>;

/** Whether `email` (lower case) is on the list. */
export function emailAllowed(allowed: readonly string[], email: string): boolean {
  const at = email.lastIndexOf('@');
  return at > 0 && allowed.some((a) => a === email || (a.startsWith('*@') && a.slice(1) === email.slice(at)));
}

/** True when the policy asks for nothing: the resource is public (today's behaviour). */
export function isPublic(p: AccessPolicy | undefined): boolean {
  return !p || (!p.blockAccess && !p.sso && !p.password && !p.pin && !p.email && !p.basicAuth && p.links.length === 0 && p.rules.length === 0);
}
