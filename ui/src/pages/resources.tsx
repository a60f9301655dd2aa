// Resources: HTTP by hostname, TCP/UDP by port; where each is served from, its targets' health,
// its certificate and what access control the edge enforces. Creating one, adding a target.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';
import { useAction, usePolling } from '../use-action.ts';
import { AccessPanel } from './access.tsx';

type Resource = Api['GET /api/v1/orgs/{orgId}/resources']['response']['items'][number];
type Site = Api['GET /api/v1/orgs/{orgId}/sites']['response']['items'][number];

const address = (r: Resource) => (r.protocol === 'http' ? `${r.tls ? 'https' : 'http'}://${r.hostname}` : `${r.protocol}/${r.proxyPort}`);

export function ResourcesTab({ orgId, canWrite }: { orgId: string; canWrite: boolean }) {
  const [resources, setResources] = useState<Resource[]>([]);
  const [sites, setSites] = useState<Site[]>([]);
  const [protocol, setProtocol] = useState<'http' | 'tcp' | 'udp'>('http');
  const load = () => api('GET /api/v1/orgs/{orgId}/resources', { params: { orgId } }).then((r) => setResources(r.data.items), (err) => setError(describe(err)));
  const { error, setError, act } = useAction(load);
  useEffect(() => void api('GET /api/v1/orgs/{orgId}/sites', { params: { orgId } }).then((r) => setSites(r.data.items), () => {}), [orgId]);
  usePolling(load, 2000, [orgId]);
  const field = (f: HTMLFormElement, n: string) => (f.elements.namedItem(n) as HTMLInputElement).value.trim();
  const create = (e: Event) => {
    e.preventDefault();
    const f = e.currentTarget as HTMLFormElement;
    void act(async () => {
      const name = field(f, 'name');
      const body = protocol === 'http' ? { name, protocol, hostname: field(f, 'hostname').toLowerCase(), tls: (f.elements.namedItem('tls') as HTMLInputElement).checked } : { name, protocol, proxyPort: Number(field(f, 'port')) };
      await api('POST /api/v1/orgs/{orgId}/resources', { params: { orgId }, body });
      f.reset();
    });
  };
  const addTarget = (r: Resource) => (e: Event) => {
    e.preventDefault();
    const f = e.currentTarget as HTMLFormElement;
    const scheme = (r.protocol === 'http' ? field(f, 'scheme') : r.protocol) as 'http' | 'https' | 'tcp' | 'udp';
    void act(async () => {
      const check = field(f, 'check') as 'none' | 'tcp' | 'http';
      const healthCheck = check === 'http' ? { type: check, path: field(f, 'checkPath') || '/' } : { type: check };
      await api('POST /api/v1/orgs/{orgId}/resources/{resourceId}/targets', { params: { orgId, resourceId: r.id }, body: { siteId: field(f, 'siteId'), host: field(f, 'host'), port: Number(field(f, 'port')), scheme, weight: Number(field(f, 'weight') || 100), healthCheck } });
      f.reset();
    });
  };
  return (
    <div>
      {error && <p class="error" role="alert">{error}</p>}
      {resources.map((r) => {
        const healthy = r.status.targets.filter((t) => t.enabled && t.healthy && t.siteOnline).length;
        return (
          <article key={r.id} data-resource={r.name}>
            <header><strong>{r.name}</strong> <code class="address">{address(r)}</code> {r.enabled ? '' : <span class="badge dead">disabled</span>}</header>
            <ul class="targets">
              {r.status.targets.map((t) => (
                <li key={t.targetId}>target on {sites.find((s) => s.id === t.siteId)?.name ?? t.siteId.slice(0, 8)}: <span class={`badge ${t.healthy && t.siteOnline ? 'live' : 'dead'}`}>{!t.siteOnline ? 'site offline' : t.healthy ? 'healthy' : 'unhealthy'}</span>{t.node && <span class="muted"> via {t.node}</span>}{t.enabled ? '' : ' (disabled)'}</li>
              ))}
            </ul>
            <p>
              Served by <span class="serving">{r.status.servingNodes.join(', ') || 'no node yet'}</span>; targets healthy <span class="healthy">{healthy}/{r.status.targets.length}</span>
              {r.certificate && <>; certificate <span class="certificate">{r.certificate.status}</span>{r.certificate.notAfter && `, expires ${new Date(r.certificate.notAfter).toLocaleDateString()}`}</>}
              {r.status.access && <>; access: {r.status.access.blockAccess ? 'blocked' : r.status.access.methods.join(', ') || 'rules only'}</>}
            </p>
            {Object.entries(r.status.listenProblems).map(([node, problem]) => <p key={node} class="error">{node}: {problem}</p>)}
            {r.protocol === 'http' && <details class="access-details"><summary>Access control</summary><AccessPanel orgId={orgId} resourceId={r.id} canWrite={canWrite} /></details>}
            {canWrite && (
              <form class="target-form" onSubmit={addTarget(r)}>
                <fieldset role="group">
                  <select name="siteId" required aria-label="Site">{sites.map((s) => <option key={s.id} value={s.id}>{s.name}</option>)}</select>
                  <input name="host" placeholder="host on the site" required aria-label="Target host" />
                  <input name="port" type="number" min={1} max={65535} placeholder="port" required aria-label="Target port" />
                  {r.protocol === 'http' && <select name="scheme" aria-label="Target scheme"><option value="http">http</option><option value="https">https</option></select>}
                  <input name="weight" type="number" min={1} max={1000} placeholder="weight" aria-label="Weight" />
                  <button type="submit">Add target</button>
                </fieldset>
                <fieldset role="group">
                  <select name="check" aria-label="Health check"><option value="none">no health check</option><option value="tcp">TCP health check</option>{r.protocol === 'http' && <option value="http">HTTP health check</option>}</select>
                  <input name="checkPath" placeholder="/healthz (HTTP checks)" aria-label="Health check path" />
                </fieldset>
              </form>
            )}
          </article>
        );
      })}
      {resources.length === 0 && <p class="muted">No resource yet.</p>}
      {canWrite && (
        <form id="resource-form" onSubmit={create}>
          <fieldset role="group">
            <select name="protocol" aria-label="Protocol" value={protocol} onChange={(e) => setProtocol((e.currentTarget as HTMLSelectElement).value as 'http')}>
              <option value="http">HTTP</option><option value="tcp">TCP</option><option value="udp">UDP</option>
            </select>
            <input name="name" placeholder="Name" required aria-label="Resource name" />
            {protocol === 'http' ? <input name="hostname" placeholder="app.example.com" required aria-label="Hostname" /> : <input name="port" type="number" placeholder="public port" required aria-label="Public port" />}
            <button type="submit">Create resource</button>
          </fieldset>
          {protocol === 'http' && <label><input type="checkbox" name="tls" role="switch" checked /> HTTPS (certificate from the cluster)</label>}
        </form>
      )}
    </div>
  );
}
