// The cert-issuer actor: a cluster singleton (placed like any actor, one id) that obtains and
// renews a certificate per TLS hostname with ACME DNS-01 through the cluster's own DNS.
//  - No two orders for one hostname: the actor handles one request at a time and re-checks
//    the stored certificate first; an order in flight is recorded (fenced) before any
//    challenge, so a new owner after a node death takes that order up instead of placing
//    another.
//  - Keys never rest in plaintext: the account key and certificate keys are sealed
//    (AES-256-GCM under the cluster key) before they reach PostgreSQL.
//  - Failures back off exponentially (longer when the CA says rateLimited); renewal starts
//    when `renewRemainingPercent` of the lifetime remains; every node is told to reload.
import * as acme from 'acme-client';
import { z } from 'zod';
import { isClusterError } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import { audit } from '../persistence/audit.ts';
import { sql, type DatabasePool } from '../persistence/db.ts';
import { fencedWrite } from '../persistence/epochs.ts';
import type { Sealer } from '../persistence/sealed.ts';
import type { CertIssuerMsg } from '../protocol/actor-messages.ts';
import { unknownMessage, type Behavior } from './runtime.ts';

export const CERT_ISSUER_ID = 'cluster';

export type { CertIssuerMsg };

export interface CertIssuerDeps {
  db: DatabasePool;
  sealer: Sealer;
  nodeId: string;
  clock: Clock;
  directoryUrl: string;
  contact: string | undefined;
  checkEveryMs: number;
  renewRemainingPercent: number;
  logger: Logger;
  /** Sets or clears an ACME challenge TXT record; resolves once every node serves the change. */
  challenge(zone: string, name: string, value: string, present: boolean): Promise<void>;
  /** Tells every node to reload the hostname's certificate. */
  published(hostname: string): Promise<void>;
  /** The cluster's own public hostnames that need a certificate (the auth portal). */
  clusterHostnames: readonly string[];
}

export interface ObtainResult {
  hostname: string;
  status: 'valid' | 'pending' | 'failed' | 'unknown';
  /** True when this request placed (or completed) an ACME order. */
  ordered: boolean;
  notAfter: string | null;
  error?: string;
  /** Set when the hostname is backing off after failures: no order before this time. */
  retryAt?: string;
}

/** Orders one check may place for one org: a failing org cannot hold up the others' orders. */
export const ORDERS_PER_ORG_PER_CHECK = 2;

/**
 * What one check orders, in order (pure): due hostnames out of their backoff, those that
 * never failed first, at most `perOrg` for each org.
 */
export function dueOrders<R extends Pick<CertRow, 'hostname' | 'org_id' | 'status' | 'renew_after' | 'pending_order_url' | 'failures' | 'next_attempt_at'>>(rows: readonly R[], now: Date, perOrg = ORDERS_PER_ORG_PER_CHECK): R[] {
  const taken = new Map<string, number>();
  return rows
    .filter((r) => due(r, now) && !(r.next_attempt_at && r.next_attempt_at > now))
    .sort((a, b) => (a.failures ?? 0) - (b.failures ?? 0) || a.hostname.localeCompare(b.hostname))
    .filter((r) => {
      const n = taken.get(r.org_id) ?? 0;
      taken.set(r.org_id, n + 1);
      return n < perOrg;
    });
}

const certRow = z.object({
  hostname: z.string(), zone: z.string(), domain_id: z.string(), status: z.string().nullable(), not_after: z.coerce.date().nullable(), renew_after: z.coerce.date().nullable(),
  pending_order_url: z.string().nullable(), pending_key_sealed: z.instanceof(Buffer).nullable(), failures: z.coerce.number().nullable(), next_attempt_at: z.coerce.date().nullable(),
  org_id: z.string(),
});
type CertRow = z.infer<typeof certRow>;

const CERT_COLUMNS = sql.fragment`c.status, c.not_after, c.renew_after, c.pending_order_url, c.pending_key_sealed, c.failures, c.next_attempt_at`;

/**
 * Hostnames that should have a certificate: enabled TLS HTTP resources under a verified
 * domain, and the cluster's own public hostnames (the auth portal) when they lie under one
 * (the longest such domain; its org's order limits apply).
 */
function wanted(clusterHostnames: readonly string[]) {
  return sql.fragment`SELECT * FROM (
    SELECT r.hostname, d.name AS zone, d.id AS domain_id, r.org_id, ${CERT_COLUMNS}
    FROM resources r JOIN domains d ON d.id = r.domain_id LEFT JOIN certificates c ON c.hostname = r.hostname
    WHERE r.enabled AND r.tls AND r.protocol = 'http' AND r.hostname IS NOT NULL AND d.status = 'verified'
    UNION ALL
    (SELECT DISTINCT ON (h.hostname) h.hostname, d.name AS zone, d.id AS domain_id, d.org_id, ${CERT_COLUMNS}
    FROM unnest(${sql.array([...clusterHostnames], 'text')}::text[]) AS h(hostname)
      JOIN domains d ON (h.hostname = d.name OR h.hostname LIKE '%.' || d.name) AND d.status = 'verified'
      LEFT JOIN certificates c ON c.hostname = h.hostname
    WHERE NOT EXISTS (SELECT 1 FROM resources x WHERE x.hostname = h.hostname)
    ORDER BY h.hostname, length(d.name) DESC)
  ) w`;
}

/** How long to wait after the `failures`-th failure in a row (longer when the CA said rateLimited). */
export function backoffMs(failures: number, rateLimited: boolean): number {
  const base = Math.min(6 * 3600_000, 30_000 * 2 ** Math.min(failures, 12));
  return rateLimited ? Math.max(base, 3600_000) : base;
}

/** A hostname needs an order: no valid certificate, renewal time reached, or an order in flight. */
export const due = (r: Pick<CertRow, 'status' | 'renew_after' | 'pending_order_url'>, now: Date) => r.status !== 'valid' || r.renew_after === null || r.renew_after <= now || r.pending_order_url !== null;

export function certIssuerBehavior(deps: CertIssuerDeps, epoch: number): Behavior<{ checks: number }, CertIssuerMsg> {
  const fence = { kind: 'cert-issuer', id: CERT_ISSUER_ID, epoch };
  const log = deps.logger.child({ actor: 'cert-issuer' });
  let client: acme.Client | undefined;
  let timer: { cancel(): void } | undefined;

  /**
   * The ACME account for this directory: one key, made once, sealed, shared by every owner.
   * Each owner finds the account by its key (newAccount with onlyReturnExisting, RFC 8555
   * 7.3.1) and registers it only when the CA does not know the key (a first start, or a CA
   * that lost or deactivated it). Calling createAccount() with a known account URL would
   * make acme-client send an empty account update, which CAs refuse: every owner after the
   * first could then order nothing.
   */
  async function account(): Promise<acme.Client> {
    if (client) return client;
    const row = () => deps.db.maybeOne(sql.type(z.object({ key_sealed: z.instanceof(Buffer), account_url: z.string().nullable() }))`
      SELECT key_sealed, account_url FROM acme_accounts WHERE directory_url = ${deps.directoryUrl}`);
    let stored = await row();
    if (!stored) {
      const key = await acme.crypto.createPrivateEcdsaKey();
      await deps.db.query(sql.unsafe`INSERT INTO acme_accounts (directory_url, key_sealed) VALUES (${deps.directoryUrl}, ${sql.binary(deps.sealer.seal(key, `acme-account:${deps.directoryUrl}`))}) ON CONFLICT (directory_url) DO NOTHING`);
      stored = (await row())!; // another owner may have won the insert: use its key
    }
    const accountKey = deps.sealer.open(stored.key_sealed, `acme-account:${deps.directoryUrl}`);
    const contact = deps.contact ? [`mailto:${deps.contact}`] : undefined;
    const c = new acme.Client({ directoryUrl: deps.directoryUrl, accountKey });
    let acct: { contact?: string[] };
    try {
      acct = await c.createAccount({ onlyReturnExisting: true });
    } catch (err) {
      log.info({ directoryUrl: deps.directoryUrl, reason: (err as Error).message }, stored.account_url ? 'the CA does not know the stored ACME account; registering its key again' : 'registering the ACME account');
      acct = await c.createAccount({ termsOfServiceAgreed: true, ...(contact ? { contact } : {}) });
    }
    if (contact && !contact.every((m) => acct.contact?.includes(m))) await c.updateAccount({ contact });
    if (stored.account_url !== c.getAccountUrl()) await deps.db.query(sql.unsafe`UPDATE acme_accounts SET account_url = ${c.getAccountUrl()} WHERE directory_url = ${deps.directoryUrl}`);
    client = c;
    return c;
  }

  async function load(hostname: string): Promise<CertRow | null> {
    return deps.db.maybeOne(sql.type(certRow)`${wanted(deps.clusterHostnames)} WHERE w.hostname = ${hostname} LIMIT 1`);
  }

  /** Places (or resumes) the order for one hostname and stores the certificate. */
  async function order(row: CertRow): Promise<ObtainResult> {
    const { hostname, zone } = row;
    const c = await account();
    let key: Buffer;
    let order: acme.Order | undefined;
    if (row.pending_order_url && row.pending_key_sealed) {
      key = deps.sealer.open(row.pending_key_sealed, `certificate:${hostname}`);
      order = await c.getOrder({ url: row.pending_order_url } as acme.Order).catch(() => undefined);
      if (order?.status === 'invalid') order = undefined;
      if (order) log.info({ hostname, order: row.pending_order_url }, 'resuming an ACME order placed by a previous owner');
    } else key = await acme.crypto.createPrivateEcdsaKey();
    const resumed = order !== undefined;
    if (!order) {
      order = await c.createOrder({ identifiers: [{ type: 'dns', value: hostname }] });
      const placed = order;
      await fencedWrite(deps.db, fence, async (tx) => {
        await tx.query(sql.unsafe`
          INSERT INTO certificates (hostname, domain_id, status, pending_order_url, pending_key_sealed)
          VALUES (${hostname}, ${row.domain_id}, 'pending', ${placed.url}, ${sql.binary(deps.sealer.seal(key, `certificate:${hostname}`))})
          ON CONFLICT (hostname) DO UPDATE SET pending_order_url = EXCLUDED.pending_order_url, pending_key_sealed = EXCLUDED.pending_key_sealed, updated_at = now()`);
        await audit(tx, { actorType: 'node', actorId: deps.nodeId, orgId: null, action: 'certificate.ordered', targetType: 'certificate', targetId: hostname, nodeId: deps.nodeId, details: { order: placed.url } });
      });
      log.info({ hostname, order: order.url }, 'ACME order placed');
    }
    if (order.status === 'pending') {
      for (const authz of await c.getAuthorizations(order)) {
        if (authz.status === 'valid') continue;
        const challenge = authz.challenges.find((ch) => ch.type === 'dns-01');
        if (!challenge) throw new Error(`the CA offers no dns-01 challenge for ${authz.identifier.value}`);
        const value = await c.getChallengeKeyAuthorization(challenge);
        const name = `_acme-challenge.${authz.identifier.value}`;
        await deps.challenge(zone, name, value, true);
        try {
          await c.completeChallenge(challenge);
          await c.waitForValidStatus(challenge);
        } finally {
          await deps.challenge(zone, name, value, false).catch((err) => log.warn({ name, err: (err as Error).message }, 'could not clear a challenge record'));
        }
      }
    }
    const [, csr] = await acme.crypto.createCsr({ commonName: hostname, altNames: [hostname] }, key);
    if (order.status !== 'valid') order = await c.finalizeOrder(order, csr);
    const cert = await c.getCertificate(order);
    const info = acme.crypto.readCertificateInfo(cert);
    const lifetime = info.notAfter.getTime() - info.notBefore.getTime();
    const renewAfter = new Date(info.notAfter.getTime() - (lifetime * deps.renewRemainingPercent) / 100);
    const renewal = row.status === 'valid';
    await fencedWrite(deps.db, fence, async (tx) => {
      await tx.query(sql.unsafe`
        UPDATE certificates SET status = 'valid', cert_pem = ${cert}, key_sealed = ${sql.binary(deps.sealer.seal(key, `certificate:${hostname}`))},
          not_before = ${info.notBefore.toISOString()}, not_after = ${info.notAfter.toISOString()}, renew_after = ${renewAfter.toISOString()},
          order_url = ${order!.url}, pending_order_url = NULL, pending_key_sealed = NULL, failures = 0, next_attempt_at = NULL, last_error = NULL,
          version = version + 1, updated_at = now()
        WHERE hostname = ${hostname}`);
      await audit(tx, { actorType: 'node', actorId: deps.nodeId, orgId: null, action: renewal ? 'certificate.renewed' : 'certificate.issued', targetType: 'certificate', targetId: hostname, nodeId: deps.nodeId, details: { notAfter: info.notAfter.toISOString(), resumed } });
    });
    await deps.published(hostname);
    log.info({ hostname, notAfter: info.notAfter.toISOString(), renewal }, renewal ? 'certificate renewed' : 'certificate issued');
    return { hostname, status: 'valid', ordered: true, notAfter: info.notAfter.toISOString() };
  }

  async function failed(row: CertRow, err: unknown): Promise<ObtainResult> {
    const message = (err as Error).message ?? String(err);
    const rateLimited = /rateLimited/i.test(message) || (err as { type?: string }).type?.endsWith(':rateLimited') === true;
    const failures = (row.failures ?? 0) + 1;
    const next = new Date(deps.clock.now() + backoffMs(failures - 1, rateLimited));
    log.warn({ hostname: row.hostname, failures, retryAt: next.toISOString(), rateLimited, err: message }, 'certificate order failed; will retry');
    if (isClusterError(err, 'CLUSTER_ERR_ACTOR_FENCED')) throw err;
    await fencedWrite(deps.db, fence, async (tx) => {
      await tx.query(sql.unsafe`
        INSERT INTO certificates (hostname, domain_id, status, failures, next_attempt_at, last_error)
        VALUES (${row.hostname}, ${row.domain_id}, 'failed', ${failures}, ${next.toISOString()}, ${message.slice(0, 500)})
        ON CONFLICT (hostname) DO UPDATE SET failures = ${failures}, next_attempt_at = ${next.toISOString()}, last_error = ${message.slice(0, 500)},
          status = CASE WHEN certificates.status = 'valid' THEN 'valid' ELSE 'failed' END, updated_at = now()`);
      await audit(tx, { actorType: 'node', actorId: deps.nodeId, orgId: null, action: 'certificate.failed', targetType: 'certificate', targetId: row.hostname, nodeId: deps.nodeId, details: { error: message.slice(0, 500), failures, rateLimited } });
    }).catch((e) => log.warn({ err: (e as Error).message }, 'could not record the failure'));
    return { hostname: row.hostname, status: row.status === 'valid' ? 'valid' : 'failed', ordered: false, notAfter: row.not_after?.toISOString() ?? null, error: message };
  }

  /** Re-checks under the actor's one-at-a-time rule, then orders only if still needed and not backing off. */
  async function obtain(hostname: string): Promise<ObtainResult> {
    const row = await load(hostname);
    if (!row) return { hostname, status: 'unknown', ordered: false, notAfter: null, error: 'no enabled TLS resource under a domain has this hostname' };
    const now = new Date(deps.clock.now());
    if (!due(row, now)) return { hostname, status: 'valid', ordered: false, notAfter: row.not_after?.toISOString() ?? null };
    // The failure backoff holds for API requests too: retrying at will would spend the
    // cluster's shared ACME account on one org's broken zone.
    if (row.next_attempt_at && row.next_attempt_at > now) return { hostname, status: (row.status as ObtainResult['status']) ?? 'failed', ordered: false, notAfter: row.not_after?.toISOString() ?? null, retryAt: row.next_attempt_at.toISOString() };
    try {
      return await order(row);
    } catch (err) {
      return failed(row, err);
    }
  }

  return {
    init(ctx) {
      timer?.cancel();
      timer = deps.clock.setInterval(() => ctx.self({ type: 'check' }), deps.checkEveryMs);
      ctx.self({ type: 'check' }); // take up orders in flight and anything due, now
      return { checks: 0 };
    },
    async receive(state, msg, ctx) {
      switch (msg.type) {
        case 'check': {
          const rows = await deps.db.any(sql.type(certRow)`${wanted(deps.clusterHostnames)} ORDER BY w.hostname`);
          for (const r of dueOrders(rows, new Date(deps.clock.now()))) await obtain(r.hostname);
          return { checks: state.checks + 1 };
        }
        case 'obtain':
          ctx.reply(await obtain(msg.hostname.toLowerCase()));
          return state;
        case 'status':
          ctx.reply({ epoch, checks: state.checks, directoryUrl: deps.directoryUrl });
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
