// A real OpenID provider for tests: panva's oidc-provider (OpenID Certified) over HTTPS on
// loopback, with its own CA (trusted by node processes through NODE_EXTRA_CA_CERTS), two
// users with a `roles` claim, and its built-in login pages (any password signs in a known
// user). `rotateKeys()` restarts it with a new signing key, as a provider rotating its JWKS;
// `stop()` takes it down.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Provider from 'oidc-provider';
import { runChecked } from '../../devenv/process.ts';
import { freePort } from '../../devenv/ports.ts';

export const OIDC_USERS: Record<string, { email: string; name: string; roles: string[] }> = {
  alice: { email: 'alice@idp.test', name: 'Alice Idp', roles: ['cluster-admins'] },
  bob: { email: 'bob@idp.test', name: 'Bob Idp', roles: ['staff'] },
  // Claims the address of the cluster's first administrator (test/harness/api.ts ADMIN).
  mallory: { email: 'admin@example.com', name: 'Mallory', roles: ['cluster-admins'] },
  // A user whose token carries more claims than a relying party should take.
  bloated: { email: 'bloated@idp.test', name: 'B'.repeat(100), roles: Array.from({ length: 2000 }, (_, i) => `group-${i}-padding-padding`) },
};

export interface TestProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** CA of its TLS certificate. */
  caFile: string;
  /** Keys it signed ID tokens with so far (kid). */
  kid(): string;
  /** Makes its token endpoint's clock run `ms` behind (0: right again). */
  skewTokenClock(ms: number): void;
  rotateKeys(): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startOidcProvider(t: { teardown(fn: () => unknown): void }, redirectUris: string[]): Promise<TestProvider> {
  const dir = mkdtempSync(join(tmpdir(), 'oidc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ssl = (args: string[]) => runChecked('openssl', 'openssl', args, { cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/CN=test OIDC CA']);
  ssl(['req', ...ec, '-keyout', 'idp.key', '-out', 'idp.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl(['x509', '-req', '-in', 'idp.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'idp.pem', '-days', '30', '-extfile', 'san.ext']);
  const port = await freePort();
  const issuer = `https://127.0.0.1:${port}`;
  const clientId = 'cluster';
  const clientSecret = 'a-client-secret-of-at-least-32-characters';
  let generation = 0;
  /** How far behind its token endpoint's clock runs (a provider with a wrong clock issues expired ID tokens). */
  let tokenClockSkewMs = 0;
  let currentKid = '';
  let server: Server | undefined;

  const start = async () => {
    const kid = `key-${++generation}`;
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    currentKid = kid;
    const provider = new Provider(issuer, {
      // `other`: another relying party of the same provider, whose codes must not work for ours.
      clients: [clientId, 'other'].map((id) => ({ client_id: id, client_secret: clientSecret, redirect_uris: redirectUris, grant_types: ['authorization_code'], response_types: ['code'], id_token_signed_response_alg: 'ES256' })),
      jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' }] as never },
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], roles: ['roles'] },
      scopes: ['openid', 'email', 'profile', 'roles', 'offline_access'],
      pkce: { required: () => true },
      conformIdTokenClaims: false, // claims in the ID token itself, so the relying party needs no userinfo call
      findAccount: async (_ctx, id) => {
        const u = OIDC_USERS[id];
        return u ? { accountId: id, claims: async () => ({ sub: id, email: u.email, email_verified: true, name: u.name, roles: u.roles }) } : undefined;
      },
      features: { devInteractions: { enabled: true } },
      cookies: { keys: ['test-cookie-key-0123456789'] },
    });
    provider.proxy = false;
    provider.use(async (ctx, next) => {
      if (ctx.path !== '/token' || tokenClockSkewMs === 0) return next();
      const realNow = Date.now;
      Date.now = () => realNow() - tokenClockSkewMs;
      try {
        await next();
      } finally {
        Date.now = realNow;
      }
    });
    server = createServer({ key: readFileSync(join(dir, 'idp.key')), cert: readFileSync(join(dir, 'idp.pem')) }, provider.callback());
    await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r));
  };
  const stop = async () => {
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
  };
  await start();
  t.teardown(stop);
  return {
    issuer,
    clientId,
    clientSecret,
    caFile: join(dir, 'ca.pem'),
    kid: () => currentKid,
    rotateKeys: async () => (await stop(), await start()),
    skewTokenClock: (ms) => void (tokenClockSkewMs = ms),
    stop,
    start,
  };
}
