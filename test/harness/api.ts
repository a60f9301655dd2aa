// Admin API helpers: a cluster behind haproxy with its first administrator created, and a
// small HTTP client that keeps cookies out of the way of assertions.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalHaproxy } from '../../devenv/haproxy.ts';
import { startCluster, type TestCluster } from './cluster.ts';
import { until } from './until.ts';

export interface Reply {
  status: number;
  body: any;
  cookie?: string;
}

export async function call(base: string, method: string, path: string, opts: { cookie?: string; bearer?: string; body?: unknown; raw?: string; contentType?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.cookie) headers.cookie = opts.cookie;
  if (opts.bearer) headers.authorization = `Bearer ${opts.bearer}`;
  let body: string | undefined;
  if (opts.raw !== undefined) {
    body = opts.raw;
    headers['content-type'] = opts.contentType ?? 'application/json';
  } else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${base}${path}`, { method, headers, body, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  const setCookie = res.headers.get('set-cookie');
  return { status: res.status, body: text ? JSON.parse(text) : undefined, cookie: setCookie?.split(';')[0] };
}

export const ADMIN = { email: 'admin@example.com', password: 'correct horse battery staple' };

export interface ApiCluster extends TestCluster {
  lb: string;
  adminCookie: string;
}

export { setupToken } from '../../devenv/admin-client.ts';
import { setupToken } from '../../devenv/admin-client.ts';

interface Tap {
  teardown(fn: () => unknown): void;
}

/** `lbPort`: the load balancer's port, when the test must know its URL before the nodes start. */
export async function startApiCluster(t: Tap, count: number, config: Record<string, any> = {}, perNode?: (i: number) => Record<string, any>, env?: NodeJS.ProcessEnv, lbPort?: number): Promise<ApiCluster> {
  const cluster = await startCluster(t, count, { admin: { trustProxy: ['127.0.0.1'] }, ...config }, perNode, env);
  const haproxy = await LocalHaproxy.start({
    port: lbPort,
    dir: mkdtempSync(join(tmpdir(), 'haproxy-')),
    backends: cluster.nodes.map((n) => ({ name: String(n.config.nodeId), address: n.adminUrl.replace('http://', '') })),
  });
  t.teardown(() => haproxy.stop());
  const token = await setupToken(cluster.nodes);
  const setup = await call(haproxy.url, 'POST', '/api/v1/auth/setup', { body: { token, ...ADMIN } });
  if (setup.status !== 201) throw new Error(`setup failed: ${JSON.stringify(setup.body)}`);
  const login = await call(haproxy.url, 'POST', '/api/v1/auth/login', { body: ADMIN });
  if (login.status !== 200 || !login.cookie) throw new Error(`login failed: ${JSON.stringify(login.body)}`);
  return Object.assign(cluster, { lb: haproxy.url, adminCookie: login.cookie });
}

/**
 * Waits until the resource's published route names `node` as holding a usable target's
 * tunnel (the API's resource status): from then on every node's ingress routes it.
 */
export async function servedBy(c: ApiCluster, orgId: string, resourceId: string, node: string, ms = 10_000): Promise<void> {
  await until(async () => {
    const res = await call(c.lb, 'GET', `/api/v1/orgs/${orgId}/resources/${resourceId}`, { cookie: c.adminCookie });
    return (res.body?.status?.servingNodes ?? []).includes(node);
  }, ms, `resource ${resourceId} to be served by ${node}`);
}

export interface PublishedResource {
  org: { id: string };
  /** `/api/v1/orgs/:orgId` */
  base: string;
  site: { id: string; connector: { secret: string } };
  resource: { id: string; version: number };
  target: { id: string; version: number };
}

/** Adds a domain to an org and marks it verified by hand, as a server admin may (for tests of serving, not of verification). */
export async function addVerifiedDomain(c: { lb: string; adminCookie: string }, base: string, name: string): Promise<{ id: string; name: string }> {
  const domain = (await call(c.lb, 'POST', `${base}/domains`, { cookie: c.adminCookie, body: { name } })).body;
  const verified = await call(c.lb, 'POST', `${base}/domains/${domain.id}/verify`, { cookie: c.adminCookie, body: { force: true } });
  if (verified.body?.verification?.status !== 'verified') throw new Error(`could not verify ${name}: ${JSON.stringify(verified.body)}`);
  return domain;
}

/** An org with a zone, a site and a plain-HTTP resource `app.<zone>` whose one target is `127.0.0.1:targetPort` on that site. */
export async function publishHttpResource(c: ApiCluster, o: { slug: string; zone: string; targetPort: number }): Promise<PublishedResource> {
  const cookie = c.adminCookie;
  const org = (await call(c.lb, 'POST', '/api/v1/orgs', { cookie, body: { slug: o.slug, name: o.slug } })).body;
  const base = `/api/v1/orgs/${org.id}`;
  await addVerifiedDomain(c, base, o.zone);
  const site = (await call(c.lb, 'POST', `${base}/sites`, { cookie, body: { name: 'site' } })).body;
  const resource = (await call(c.lb, 'POST', `${base}/resources`, { cookie, body: { name: 'app', protocol: 'http', hostname: `app.${o.zone}`, tls: false } })).body;
  const target = (await call(c.lb, 'POST', `${base}/resources/${resource.id}/targets`, { cookie, body: { siteId: site.id, host: '127.0.0.1', port: o.targetPort, scheme: 'http' } })).body;
  if (!target?.id) throw new Error(`could not publish app.${o.zone}: ${JSON.stringify(target)}`);
  return { org, base, site, resource, target };
}
