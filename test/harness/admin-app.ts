// The admin API in-process (Fastify inject) over a real PostgreSQL database and Valkey
// prefix of the test's own, with a server administrator logged in: for the API's rules
// (validation, org scoping, permissions, conflicts), which need no cluster of processes.
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../persistence/sealed.ts';
import { OidcSignIn } from '../../gateways/identity/oidc.ts';
import { systemClock } from '../../core/clock.ts';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import type { ApiDeps } from '../../gateways/admin/http.ts';
import { createAdminGateway } from '../../gateways/admin/server.ts';
import { issueConnectorToken } from '../../gateways/connector/token.ts';
import { createDb } from '../../persistence/db.ts';
import { hashToken } from '../../persistence/hashing.ts';
import { migrate } from '../../persistence/migrate.ts';
import { Valkey } from '../../persistence/valkey.ts';
import { ADMIN, type Reply } from './api.ts';
import { freshClusterName, freshDatabase } from './services.ts';

const logger = createLogger({ level: 'silent' });
const SETUP_TOKEN = 'setup-token-of-the-admin-app';

export type Call = (method: string, path: string, opts?: { cookie?: string; bearer?: string; body?: unknown; raw?: string; contentType?: string; headers?: Record<string, string> }) => Promise<Reply>;

export async function adminApp(t: { teardown(fn: () => unknown): void }): Promise<{ call: Call; cookie: string; postgresUrl: string }> {
  const postgresUrl = await freshDatabase(t);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  await migrate({ url: new Secret(postgresUrl), connectTimeout: 5000, logger });
  const db = await createDb({ url: new Secret(postgresUrl), poolSize: 4, connectTimeout: 5000, statementTimeout: 10_000, idleInTransactionTimeout: 5000, logger });
  t.teardown(() => db.end());
  const valkey = new Valkey({ url: new Secret(valkeyUrl), clusterName, connectTimeout: 2000, commandTimeout: 2000, logger });
  valkey.connect();
  t.teardown(() => valkey.close());
  if (valkey.state !== 'ready') await once(valkey.cmd, 'ready');
  const secret = new Secret('cluster-secret-of-the-admin-app-0123456789');
  const sealer = new Sealer(new Secret(randomBytes(32)));
  const api: ApiDeps = {
    db,
    valkey,
    nodeId: 'node-1',
    secureCookies: false,
    sessionTtlMs: 3600_000,
    sealer,
    smtpConfigured: false,
    owners: async () => new Map(),
    clusterEvents: () => () => {},
    zone: async () => undefined,
    oidc: new OidcSignIn({ db, valkey, sealer, clock: systemClock, logger, nodeId: 'node-1' }),
    publicUrl: undefined,
    resourcePorts: { min: 20000, max: 29999 },
    connectorToken: (siteId, generation) => ({ token: issueConnectorToken(secret, siteId, generation, 60_000), expiresAt: Date.now() + 60_000 }),
    nodes: async () => [],
    siteStatus: async (ids) => new Map(ids.map((id) => [id, { online: false, node: null, connectedSince: null, transport: null, wireguard: null, targets: [] }])),
    siteTunnel: async () => null,
    resourceStatus: async () => new Map(),
    verifyDomain: async () => ({ status: 'pending', proof: null }),
    // The cert issuer's answers, by hostname: `backoff.*` is backing off after failures.
    obtainCertificate: async (hostname) =>
      hostname.startsWith('backoff.')
        ? { hostname, status: 'failed', ordered: false, notAfter: null, retryAt: new Date(Date.now() + 600_000).toISOString() }
        : { hostname, status: 'valid', ordered: true, notAfter: null },
  };
  const app = await createAdminGateway({
    logger,
    readiness: () => ({ ready: true, node: 'node-1', pid: process.pid, state: 'running', checks: { postgres: 'up', valkey: 'up', migrations: 'done', lease: 'held' } }),
    metrics: new Registry(),
    trustProxy: [],
    api: () => api,
  });
  t.teardown(() => app.close());
  const call: Call = async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.cookie) headers.cookie = opts.cookie;
    if (opts.bearer) headers.authorization = `Bearer ${opts.bearer}`;
    let payload: string | undefined;
    if (opts.raw !== undefined) [payload, headers['content-type']] = [opts.raw, opts.contentType ?? 'application/json'];
    else if (opts.body !== undefined) [payload, headers['content-type']] = [JSON.stringify(opts.body), 'application/json'];
    const res = await app.inject({ method: method as 'GET', url: path, headers, ...(payload !== undefined ? { payload } : {}) });
    const setCookie = res.headers['set-cookie'];
    return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined, cookie: (Array.isArray(setCookie) ? setCookie[0] : setCookie)?.split(';')[0] };
  };
  await valkey.call((c) => c.set(valkey.keys.setupToken, hashToken(SETUP_TOKEN).toString('hex')));
  const setup = await call('POST', '/api/v1/auth/setup', { body: { token: SETUP_TOKEN, ...ADMIN } });
  if (setup.status !== 201 && setup.status !== 200) throw new Error(`admin setup failed: ${JSON.stringify(setup)}`);
  const login = await call('POST', '/api/v1/auth/login', { body: ADMIN });
  return { call, cookie: login.cookie!, postgresUrl };
}
