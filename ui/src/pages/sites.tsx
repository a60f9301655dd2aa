// Sites: online status, the node holding each one's tunnel and the transport in use (read again every few seconds),
// creating one (its connector command, with the secret, shown once), rotating its secret,
// deleting it.
import { useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';
import { useAction, usePolling } from '../use-action.ts';

type Site = Api['GET /api/v1/orgs/{orgId}/sites']['response']['items'][number];

/** The command that runs the site's connector against this cluster (the page's own address). */
export const connectorCommand = (id: string, secret: string) => `cluster-connector --endpoint ${location.origin} --id ${id} --secret ${secret}`;

export function SitesTab({ orgId, canWrite }: { orgId: string; canWrite: boolean }) {
  const [sites, setSites] = useState<Site[]>([]);
  const [shown, setShown] = useState<{ name: string; command: string } | undefined>();
  const load = () => api('GET /api/v1/orgs/{orgId}/sites', { params: { orgId } }).then((r) => setSites(r.data.items), (err) => setError(describe(err)));
  const { error, setError, act } = useAction(load);
  usePolling(load, 2000, [orgId]);
  const create = (e: Event) => {
    e.preventDefault();
    const f = e.currentTarget as HTMLFormElement;
    void act(async () => {
      const transport = (f.elements.namedItem('transport') as HTMLSelectElement).value as 'websocket' | 'wireguard';
      const r = await api('POST /api/v1/orgs/{orgId}/sites', { params: { orgId }, body: { name: (f.elements.namedItem('name') as HTMLInputElement).value.trim(), transport } });
      setShown({ name: r.data.name, command: connectorCommand(r.data.id, r.data.connector.secret) });
      f.reset();
    });
  };
  return (
    <div>
      {error && <p class="error" role="alert">{error}</p>}
      {shown && (
        <article id="connector-shown">
          <p>Run the connector of <strong>{shown.name}</strong> on a machine of that site. The secret is shown only now.</p>
          <pre id="connector-command">{shown.command}</pre>
          <button class="secondary" onClick={() => setShown(undefined)}>I have copied it</button>
        </article>
      )}
      <table id="sites">
        <thead><tr><th>Site</th><th>Online</th><th>Node</th><th class="wide">Transport</th><th class="wide">Last seen</th>{canWrite && <th />}</tr></thead>
        <tbody>
          {sites.map((s) => (
            <tr key={s.id} data-site={s.name}>
              <td>{s.name}</td>
              <td class="online">{s.status.online ? <span class="badge live">online</span> : <span class="badge dead">offline</span>}</td>
              <td class="node">{s.status.node ?? '-'}</td>
              {/* Configured, and what the connection uses when that differs (WireGuard that fell back to websocket). */}
              <td class="wide transport">{s.transport}{s.status.transport && s.status.transport !== s.transport ? ` (using ${s.status.transport})` : ''}</td>
              <td class="wide">{s.lastSeenAt ? new Date(s.lastSeenAt).toLocaleString() : 'never'}</td>
              {canWrite && (
                <td>
                  <button class="secondary outline rotate" onClick={() => act(async () => {
                    const r = await api('POST /api/v1/orgs/{orgId}/sites/{siteId}/rotate-secret', { params: { orgId, siteId: s.id } });
                    setShown({ name: s.name, command: connectorCommand(s.id, r.data.connector.secret) });
                  })}>Rotate secret</button>{' '}
                  <button class="secondary outline delete" onClick={() => confirm(`Delete site ${s.name}?`) && act(async () => void (await api('DELETE /api/v1/orgs/{orgId}/sites/{siteId}', { params: { orgId, siteId: s.id } })))}>Delete</button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      {sites.length === 0 && <p class="muted">No site yet.</p>}
      {canWrite && (
        <form id="site-form" onSubmit={create}>
          <fieldset role="group">
            <input name="name" placeholder="Site name" required aria-label="Site name" />
            <select name="transport" aria-label="Transport">
              <option value="websocket">websocket</option>
              <option value="wireguard">wireguard</option>
            </select>
            <button type="submit">Create site</button>
          </fieldset>
        </form>
      )}
    </div>
  );
}
