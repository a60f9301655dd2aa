// What a resource actor publishes and every node's ingress routes by: one resource's route,
// with each target's reported health and the node holding each site's tunnel. The schema is
// checked where a snapshot arrives from Valkey (protocol/channels.ts).
import { z } from 'zod';
import { AccessPolicySchema } from './access.ts';

export const TARGET_SCHEMES = ['http', 'https', 'tcp', 'udp'] as const;

export const RouteTargetSchema = z.object({
  id: z.string(),
  siteId: z.string(),
  host: z.string(),
  port: z.number().int().min(1).max(65535),
  scheme: z.enum(TARGET_SCHEMES),
  enabled: z.boolean(),
  weight: z.number().nonnegative(),
  /** Last health the site's connector reported; true when never reported (no checks). */
  healthy: z.boolean(),
});

export const RouteSchema = z.object({
  resourceId: z.string(),
  orgId: z.string(),
  protocol: z.enum(['http', 'tcp', 'udp']),
  hostname: z.string().nullable(),
  port: z.number().int().nullable(),
  tls: z.boolean(),
  enabled: z.boolean(),
  targets: z.array(RouteTargetSchema),
  /** Site id -> node holding its tunnel (live owners only; offline sites are absent). */
  owners: z.record(z.string()),
  /**
   * Site id -> another node holding a standby tunnel to the same connector: traffic goes
   * there at once when the owner is dead or suspected (before the site actor moves).
   */
  standbys: z.record(z.string()).optional(),
  /** Who may reach it (HTTP resources); absent: public. */
  access: AccessPolicySchema.optional(),
});

export type RouteTarget = z.infer<typeof RouteTargetSchema>;
export type Route = z.infer<typeof RouteSchema>;
