// Two-factor sign-in for cluster accounts: TOTP enrolment and checks in PostgreSQL (the
// secret sealed with the cluster key, bound to its user), single-use recovery codes (hashed),
// and the short-lived login tickets (Valkey) that carry a sign-in from the password step to
// the code step on any node.
import { randomBytes } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { ClusterError } from '../core/errors.ts';
import { verifyTotp } from '../core/totp.ts';
import { sql, withDb, type DatabasePool } from './db.ts';
import { generateToken, hashToken } from './hashing.ts';
import type { Sealer } from './sealed.ts';
import type { Valkey } from './valkey.ts';

export const RECOVERY_CODES = 10;
const TICKET_TTL_MS = 5 * 60_000;
/** Wrong codes one ticket may take before it is spent. */
export const TICKET_ATTEMPTS = 5;

const context = (userId: string) => `totp:${userId}`;

/** Whether the user has TOTP on, and whether they must (their own flag or an org's policy). */
export async function secondFactorOf(db: CommonQueryMethods, userId: string): Promise<{ enrolled: boolean; required: boolean }> {
  const r = await db.one(sql.type(z.object({ enrolled: z.boolean(), required: z.boolean() }))`
    SELECT EXISTS (SELECT 1 FROM user_totp WHERE user_id = u.id AND enabled_at IS NOT NULL) AS enrolled,
      u.require_2fa OR EXISTS (SELECT 1 FROM org_members m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = u.id AND o.require_2fa) AS required
    FROM users u WHERE u.id = ${userId}`);
  return r;
}

/** A new secret for the user's app (replacing an unconfirmed one); refused when TOTP is already on. */
export async function startEnrolment(db: DatabasePool, sealer: Sealer, userId: string): Promise<Buffer> {
  const secret = randomBytes(20);
  const row = await withDb(() => db.maybeOne(sql.unsafe`
    INSERT INTO user_totp (user_id, secret_sealed) VALUES (${userId}, ${sql.binary(sealer.seal(secret, context(userId)))})
    ON CONFLICT (user_id) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed, created_at = now() WHERE user_totp.enabled_at IS NULL
    RETURNING user_id`));
  if (!row) throw new ClusterError('CLUSTER_ERR_AUTH_TOTP_ALREADY_ENABLED', 'two-factor sign-in is on already; turn it off first to enrol again', {});
  return secret;
}

/** Spends a code on the user's secret (the step is recorded with compare-and-set: a code works once). */
async function spendCode(tx: CommonQueryMethods, sealer: Sealer, userId: string, code: string, nowMs: number, enabled: boolean): Promise<boolean> {
  const row = await tx.maybeOne(sql.type(z.object({ secret_sealed: z.instanceof(Buffer), last_step: z.coerce.number() }))`
    SELECT secret_sealed, last_step FROM user_totp WHERE user_id = ${userId} AND (enabled_at IS NOT NULL) = ${enabled}`);
  if (!row) return false;
  const step = verifyTotp(sealer.open(row.secret_sealed, context(userId)), code, nowMs, row.last_step);
  if (step === undefined) return false;
  const spent = await tx.query(sql.unsafe`UPDATE user_totp SET last_step = ${step} WHERE user_id = ${userId} AND last_step < ${step}`);
  return spent.rowCount === 1;
}

/** Confirms an enrolment with a code from the app; returns the recovery codes (shown once). */
export async function confirmEnrolment(db: DatabasePool, sealer: Sealer, userId: string, code: string, nowMs: number): Promise<string[]> {
  return withDb(() => db.transaction(async (tx) => {
    if (!(await tx.exists(sql.unsafe`SELECT 1 FROM user_totp WHERE user_id = ${userId} AND enabled_at IS NULL`))) {
      throw new ClusterError('CLUSTER_ERR_AUTH_TOTP_NOT_STARTED', 'start the enrolment first (or two-factor sign-in is on already)', {});
    }
    if (!(await spendCode(tx, sealer, userId, code, nowMs, false))) throw new ClusterError('CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR', 'wrong code', {});
    await tx.query(sql.unsafe`UPDATE user_totp SET enabled_at = now() WHERE user_id = ${userId}`);
    await tx.query(sql.unsafe`DELETE FROM user_recovery_codes WHERE user_id = ${userId}`);
    const codes = Array.from({ length: RECOVERY_CODES }, () => generateToken(10).replace(/[-_]/g, 'x').slice(0, 12).toLowerCase());
    for (const c of codes) await tx.query(sql.unsafe`INSERT INTO user_recovery_codes (user_id, code_hash) VALUES (${userId}, ${sql.binary(hashToken(c))})`);
    return codes;
  }));
}

/** Checks a TOTP code or spends a recovery code. */
export async function checkSecondFactor(db: DatabasePool, sealer: Sealer, userId: string, proof: { code?: string; recoveryCode?: string }, nowMs: number): Promise<boolean> {
  return withDb(() => db.transaction(async (tx) => {
    if (proof.code !== undefined) return spendCode(tx, sealer, userId, proof.code, nowMs, true);
    if (proof.recoveryCode === undefined) return false;
    const used = await tx.maybeOne(sql.unsafe`
      UPDATE user_recovery_codes SET used_at = now() WHERE user_id = ${userId} AND code_hash = ${sql.binary(hashToken(proof.recoveryCode.trim().toLowerCase()))} AND used_at IS NULL RETURNING id`);
    return used !== null;
  }));
}

export async function disableSecondFactor(db: DatabasePool, userId: string): Promise<void> {
  await withDb(() => db.transaction(async (tx) => {
    await tx.query(sql.unsafe`DELETE FROM user_totp WHERE user_id = ${userId}`);
    await tx.query(sql.unsafe`DELETE FROM user_recovery_codes WHERE user_id = ${userId}`);
  }));
}

/** What a login ticket carries from the password step to the next one. */
export const TicketSchema = z.object({
  userId: z.string(),
  /** `totp`: a code is due; `enrol`: the account must set up TOTP first. */
  stage: z.enum(['totp', 'enrol']),
  /** Where the sign-in goes on: the admin API, or the portal for a resource. */
  purpose: z.enum(['admin', 'portal']),
  resourceId: z.string().optional(),
  attempts: z.number().int(),
});
export type Ticket = z.infer<typeof TicketSchema>;

export class LoginTickets {
  constructor(private readonly valkey: Valkey) {}

  async create(t: Omit<Ticket, 'attempts'>): Promise<string> {
    const token = generateToken(24);
    await this.valkey.call((c) => c.set(this.valkey.keys.loginTicket(hashToken(token).toString('hex')), JSON.stringify({ ...t, attempts: 0 }), 'PX', TICKET_TTL_MS));
    return token;
  }

  async read(token: string): Promise<Ticket | undefined> {
    if (token.length > 100) return undefined;
    const raw = await this.valkey.call((c) => c.get(this.valkey.keys.loginTicket(hashToken(token).toString('hex'))));
    const parsed = raw ? TicketSchema.safeParse(JSON.parse(raw)) : undefined;
    return parsed?.success ? parsed.data : undefined;
  }

  /** Counts a wrong code; the ticket is gone after TICKET_ATTEMPTS of them. */
  async failed(token: string, t: Ticket): Promise<void> {
    const key = this.valkey.keys.loginTicket(hashToken(token).toString('hex'));
    if (t.attempts + 1 >= TICKET_ATTEMPTS) await this.valkey.call((c) => c.del(key));
    else await this.valkey.call((c) => c.set(key, JSON.stringify({ ...t, attempts: t.attempts + 1 }), 'KEEPTTL'));
  }

  async spend(token: string): Promise<void> {
    await this.valkey.call((c) => c.del(this.valkey.keys.loginTicket(hashToken(token).toString('hex'))));
  }
}
