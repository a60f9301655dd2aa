// Access control's parts on one node, built in order: the revoked-session set (loaded before
// the ingress serves a request), the access log writer, sign-in, the guard and the portal.
import { readFileSync } from 'node:fs';
import { Counter, Gauge } from 'prom-client';
import type { ClusterConfig } from '../cluster.config.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';
import { AccessLog } from '../gateways/access/access-log.ts';
import { AccessGuard } from '../gateways/access/guard.ts';
import { smtpMailer } from '../gateways/access/mailer.ts';
import { Portal } from '../gateways/access/portal.ts';
import type { OidcSignIn } from '../gateways/identity/oidc.ts';
import { Revocations } from '../gateways/access/revocations.ts';
import { countryLookup } from '../gateways/access/country.ts';
import { SessionSigner } from '../gateways/access/session-token.ts';
import { AccessSignIn } from '../gateways/access/sign-in.ts';
import type { CertificateStore } from '../gateways/ingress/certs.ts';
import type { RouteChange, RouteTable } from '../gateways/ingress/routes.ts';
import type { DatabasePool } from '../persistence/db.ts';
import type { Sealer } from '../persistence/sealed.ts';
import type { Valkey } from '../persistence/valkey.ts';
import type { Registry } from 'prom-client';

export interface AccessParts {
  guard: AccessGuard;
  portal: Portal | undefined;
  /** A change of this kind was made somewhere (revocations follow). */
  changed(kind: string): void;
  /** Loads the country database if a published rule needs it (it takes a moment, once). */
  /** Loads what the routes that changed will need (the country table, for a country rule). */
  warm(changes: RouteChange[]): void;
  stop(): Promise<void>;
}

export async function startAccess(d: { config: ClusterConfig; db: DatabasePool; valkey: Valkey; oidc: OidcSignIn; sealer: Sealer; certs: CertificateStore; routes: RouteTable; registry: Registry; clock: Clock; logger: Logger }): Promise<AccessParts> {
  const { config, db, valkey, clock, logger } = d;
  const log = logger.child({ component: 'access' });
  const revocations = new Revocations({ db, clock, logger });
  await revocations.start();
  new Gauge({ name: 'cluster_access_revoked_sessions', help: 'Revoked, unexpired resource sessions this node refuses', registers: [d.registry], collect() { this.set(revocations.size); } });
  const decisions = new Counter({ name: 'cluster_access_decisions_total', help: 'Access decisions at protected resources', labelNames: ['decision', 'method'], registers: [d.registry] });
  const dropped = new Counter({ name: 'cluster_access_log_dropped_total', help: 'Access decisions not written to the access log (PostgreSQL away too long)', registers: [d.registry] });
  const accessLog = new AccessLog({ db, clock, logger: log, nodeId: config.nodeId, retentionMs: config.access.logRetention, onDrop: (n) => dropped.inc(n) });
  accessLog.start();
  const record: AccessLog['record'] = (e) => {
    decisions.inc({ decision: e.decision, method: e.method ?? 'none' });
    accessLog.record(e);
  };
  const signer = new SessionSigner(config.clusterSecret);
  const mailer = config.smtp.url && config.smtp.from ? smtpMailer(config.smtp.url, config.smtp.from) : undefined;
  const signIn = new AccessSignIn({ mailer, logger: log, db, valkey, signer, clock, nodeId: config.nodeId, sessionTtlMs: config.access.sessionTtl, portalSessionTtlMs: config.access.sessionTtl, sealer: d.sealer });
  const { portalHostname, portalCert, portalKey } = config.access;
  let portal: Portal | undefined;
  if (portalHostname) {
    portal = new Portal({ hostname: portalHostname, oidc: d.oidc, routes: d.routes, signIn, db, logger, portalSessionTtlMs: config.access.sessionTtl, record });
    if (portalCert && portalKey) d.certs.pin(portalHostname, { cert: readFileSync(portalCert, 'utf8'), key: readFileSync(portalKey, 'utf8') });
    else log.info({ portalHostname }, 'access.portalCert is not set: the portal\'s certificate comes from ACME once its hostname lies under a verified domain (a generated one until then)');
  }
  const countryOf = countryLookup();
  const guard = new AccessGuard({ signer, revocations, countryOf, portalOrigin: portal?.origin, signIn, clock, record });
  return {
    guard,
    portal,
    changed: (kind) => revocations.changed(kind),
    warm(changes) {
      if (changes.some((c) => c.after?.access?.rules.some((x) => x.match === 'country'))) countryOf.load();
    },
    stop: async () => {
      mailer?.close();
      await accessLog.stop();
    },
  };
}
