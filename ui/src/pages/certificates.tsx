// The org's certificates: when each renews, and the last error if an order failed.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';

type Cert = Api['GET /api/v1/orgs/{orgId}/certificates']['response']['items'][number];
const when = (d: string | null) => (d ? new Date(d).toLocaleString() : '-');

export function CertificatesTab({ orgId }: { orgId: string }) {
  const [certs, setCerts] = useState<Cert[]>([]);
  const [error, setError] = useState('');
  useEffect(() => void api('GET /api/v1/orgs/{orgId}/certificates', { params: { orgId } }).then((r) => setCerts(r.data.items), (err) => setError(describe(err))), [orgId]);
  return (
    <div>
      {error && <p class="error" role="alert">{error}</p>}
      <table id="certificates">
        <thead><tr><th>Hostname</th><th>Status</th><th>Expires</th><th class="wide">Renews from</th><th>Last error</th></tr></thead>
        <tbody>{certs.map((c) => <tr key={c.id} data-hostname={c.hostname}><td>{c.hostname}</td><td>{c.status}</td><td>{when(c.notAfter)}</td><td class="wide">{when(c.renewAfter)}</td><td class={c.lastError ? 'error' : 'muted'}>{c.lastError ?? 'none'}</td></tr>)}</tbody>
      </table>
      {certs.length === 0 && <p class="muted">No certificate yet: TLS resources under a verified domain get one.</p>}
    </div>
  );
}
