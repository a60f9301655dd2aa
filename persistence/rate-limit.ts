// Cluster-wide rate limits: a fixed-window counter per (scope, subject) in Valkey, so a
// limit holds however requests are spread over nodes. Fails closed: when Valkey is down the
// caller gets CLUSTER_ERR_VALKEY_UNAVAILABLE rather than an unlimited pass.
import { ClusterError } from '../core/errors.ts';
import type { Valkey } from './valkey.ts';

const HIT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}`;

export interface Limit {
  scope: string;
  max: number;
  windowMs: number;
}

/** Failed-login limits of cluster accounts, shared by the admin API and the resource portal. */
export const LOGIN_LIMITS = {
  perAccount: { scope: 'login-account', max: 10, windowMs: 5 * 60_000 } satisfies Limit,
  perAddress: { scope: 'login-address', max: 30, windowMs: 60_000 } satisfies Limit,
};

/** Counts one attempt; throws CLUSTER_ERR_API_RATE_LIMITED once `max` is exceeded in the window. */
export async function hit(valkey: Valkey, limit: Limit, subject: string): Promise<void> {
  const [n, pttl] = (await valkey.call((c) => c.eval(HIT, 1, valkey.keys.rateLimit(limit.scope, subject), limit.windowMs))) as [number, number];
  if (n > limit.max) {
    throw new ClusterError('CLUSTER_ERR_API_RATE_LIMITED', `too many ${limit.scope} attempts; retry in ${Math.ceil(pttl / 1000)}s`, { retryAfterMs: Math.max(0, pttl) });
  }
}

/**
 * Throws CLUSTER_ERR_API_RATE_LIMITED when `max` attempts are already counted in the window,
 * without counting this one: for limits on failures, checked before the attempt and counted
 * (with `hit`) only when it fails, so a user who gets in is never locked out by their successes.
 */
export async function check(valkey: Valkey, limit: Limit, subject: string): Promise<void> {
  const key = valkey.keys.rateLimit(limit.scope, subject);
  const [n, pttl] = await valkey.call(async (c) => {
    const r = await c.multi().get(key).pttl(key).exec();
    return [Number(r?.[0]?.[1] ?? 0), Number(r?.[1]?.[1] ?? 0)] as const;
  });
  if (n >= limit.max) throw new ClusterError('CLUSTER_ERR_API_RATE_LIMITED', `too many ${limit.scope} attempts; retry in ${Math.ceil(Math.max(0, pttl) / 1000)}s`, { retryAfterMs: Math.max(0, pttl) });
}

/** Clears a subject's counter (e.g. the account's after a successful login). */
export async function reset(valkey: Valkey, limit: Limit, subject: string): Promise<void> {
  await valkey.call((c) => c.del(valkey.keys.rateLimit(limit.scope, subject)));
}
