// `cluster status`: nodes, sites and resources of a running cluster, from any node's API
// (or the load balancer in front of them). `cluster up` prints the same table.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_DATA_DIR } from '../devenv/control.ts';

type Say = (line: string) => void;

/** fetch with a deadline, failing with what an operator needs to know when nothing answers. */
async function call(base: string, path: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach the admin API at ${base} (${cause?.code ?? cause?.message ?? (err as Error).message}); is the cluster running? --url names a node or the load balancer`);
  }
}

async function get(base: string, path: string, cookie: string): Promise<any> {
  const res = await call(base, path, { headers: { cookie } });
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}

function table(rows: string[][], say: Say) {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) say(`  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`);
}

const ago = (iso: string | null) => (iso ? `${Math.round((Date.now() - Date.parse(iso)) / 1000)} s` : '-');

export async function printStatus(base: string, cookie: string, say: Say): Promise<void> {
  const nodes = (await get(base, '/api/v1/nodes', cookie)).items as Array<{ id: string; admin: string; addresses?: string[]; leaseAgeMs: number | null; actors: Record<string, number> | null }>;
  const actors = (a: Record<string, number> | null) => (a ? Object.entries(a).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(', ') || 'none' : 'no answer');
  say('nodes');
  table([['NODE', 'ADDRESS', 'ADMIN', 'LEASE AGE', 'ACTORS'], ...nodes.map((n) => [n.id, (n.addresses ?? []).join(',') || '-', n.admin, n.leaseAgeMs === null ? '-' : `${n.leaseAgeMs} ms`, actors(n.actors)])], say);
  const orgs = (await get(base, '/api/v1/orgs?limit=200', cookie)).items as Array<{ id: string; slug: string }>;
  const sites: string[][] = [['ORG', 'SITE', 'ONLINE', 'NODE', 'CONNECTED FOR']];
  const resources: string[][] = [['ORG', 'RESOURCE', 'ADDRESS', 'SERVED BY', 'TARGETS HEALTHY', 'CERTIFICATE EXPIRES']];
  for (const org of orgs) {
    for (const s of (await get(base, `/api/v1/orgs/${org.id}/sites?limit=200`, cookie)).items) {
      sites.push([org.slug, s.name, s.status.online ? 'yes' : 'no', s.status.node ?? '-', ago(s.status.connectedSince)]);
    }
    for (const r of (await get(base, `/api/v1/orgs/${org.id}/resources?limit=200`, cookie)).items) {
      const targets = r.status.targets as Array<{ healthy: boolean; enabled: boolean }>;
      const address = r.protocol === 'http' ? `${r.tls ? 'https' : 'http'}://${r.hostname}` : `${r.protocol}/${r.proxyPort}`;
      const cert = r.certificate ? (r.certificate.notAfter ? `${r.certificate.notAfter.slice(0, 10)} (${r.certificate.status})` : r.certificate.status) : r.tls ? 'none yet' : '-';
      resources.push([org.slug, r.name, address, r.status.servingNodes.join(',') || 'any node', `${targets.filter((t) => t.enabled && t.healthy).length}/${targets.length}`, cert]);
    }
  }
  say('sites');
  table(sites, say);
  say('resources');
  table(resources, say);
}

/** `cluster status [--url URL] [--data-dir DIR]`: logs in with CLUSTER_ADMIN_EMAIL/PASSWORD, or the local cluster's admin. */
export async function status(url: string | undefined, dataDir?: string): Promise<void> {
  const local = join(dataDir ?? DEFAULT_DATA_DIR, 'secrets.json');
  const secrets = existsSync(local) ? (JSON.parse(readFileSync(local, 'utf8')) as { adminEmail?: string; adminPassword?: string }) : {};
  const email = process.env.CLUSTER_ADMIN_EMAIL ?? secrets.adminEmail;
  const password = process.env.CLUSTER_ADMIN_PASSWORD ?? secrets.adminPassword;
  if (!email || !password) throw new Error('set CLUSTER_ADMIN_EMAIL and CLUSTER_ADMIN_PASSWORD (or run `cluster up` on this machine first)');
  const base = url ?? 'http://127.0.0.1:8080';
  const res = await call(base, '/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  if (res.status !== 200) throw new Error(`login at ${base} failed: HTTP ${res.status}`);
  await printStatus(base, res.headers.get('set-cookie')!.split(';')[0]!, (l) => process.stdout.write(`${l}\n`));
}
