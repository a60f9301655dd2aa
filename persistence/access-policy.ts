// A resource's access policy as stored: its `auth` settings, which secrets it has (never the
// secrets), its rules and its share links (their token hashes). The resource actor reads it
// with the route and publishes both together.
import { z } from 'zod';
import { isPublic, type AccessPolicy } from '../protocol/access.ts';
import type { CommonQueryMethods } from 'slonik';
import { sql } from './db.ts';

/** The `resources.auth` column. */
export const AuthSettingsSchema = z.object({
  blockAccess: z.boolean().default(false),
  sso: z.object({ enabled: z.boolean(), roles: z.array(z.enum(['admin', 'member'])).default([]), userIds: z.array(z.string()).default([]), providerId: z.string().nullable().default(null) })
    .default({ enabled: false, roles: [], userIds: [], providerId: null }),
  basicAuth: z.boolean().default(false),
  emailCodes: z.object({ enabled: z.boolean(), allowed: z.array(z.string()).default([]) }).default({ enabled: false, allowed: [] }),
});
export type AuthSettings = z.infer<typeof AuthSettingsSchema>;

const Row = z.object({
  id: z.string(),
  auth: z.unknown(),
  secrets: z.array(z.string()),
  secrets_changed_at: z.coerce.number(),
  rules: z.array(z.object({ id: z.string(), priority: z.number(), match: z.enum(['ip', 'cidr', 'path', 'country']), value: z.string(), action: z.enum(['allow', 'deny', 'pass']) })),
  links: z.array(z.object({ id: z.string(), tokenHash: z.string(), pathPrefix: z.string().nullable(), expiresAt: z.number().nullable(), makesSession: z.boolean() })),
});

/**
 * The policies to publish, by resource id (uuids), in one statement: a resource that asks for
 * nothing (public) or does not exist is left out.
 */
export async function loadAccessPolicies(db: CommonQueryMethods, resourceIds: string[]): Promise<Map<string, AccessPolicy>> {
  const rows = await db.any(sql.type(Row)`
    SELECT r.id, r.auth,
      ARRAY(SELECT kind FROM resource_secrets WHERE resource_id = r.id) AS secrets,
      COALESCE((SELECT (extract(epoch FROM max(updated_at)) * 1000)::bigint FROM resource_secrets WHERE resource_id = r.id), 0) AS secrets_changed_at,
      COALESCE((SELECT json_agg(json_build_object('id', id, 'priority', priority, 'match', match, 'value', value, 'action', action) ORDER BY priority)
        FROM resource_rules WHERE resource_id = r.id AND enabled), '[]') AS rules,
      COALESCE((SELECT json_agg(json_build_object('id', id, 'tokenHash', encode(token_hash, 'hex'), 'pathPrefix', path_prefix,
          'expiresAt', (extract(epoch FROM expires_at) * 1000)::bigint, 'makesSession', makes_session) ORDER BY created_at)
        FROM resource_share_links WHERE resource_id = r.id AND (expires_at IS NULL OR expires_at > now())), '[]') AS links
    FROM resources r WHERE r.id = ANY(${sql.array(resourceIds, 'uuid')})`);
  const out = new Map<string, AccessPolicy>();
  for (const r of rows) {
    const settings = AuthSettingsSchema.parse(r.auth ?? {});
    const policy: AccessPolicy = {
      blockAccess: settings.blockAccess,
      sso: settings.sso.enabled ? { roles: settings.sso.roles, userIds: settings.sso.userIds, providerId: settings.sso.providerId } : null,
      password: r.secrets.includes('password'),
      pin: r.secrets.includes('pin'),
      email: settings.emailCodes.enabled ? { allowed: settings.emailCodes.allowed } : null,
      basicAuth: settings.basicAuth,
      links: r.links,
      secretsChangedAt: r.secrets_changed_at,
      rules: r.rules,
    };
    if (!isPublic(policy)) out.set(r.id, policy);
  }
  return out;
}
