// Orgs the signed-in user can see (all of them for server admins).
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';
import type { Me } from '../app.tsx';

type Org = Api['GET /api/v1/orgs']['response']['items'][number];

export function OrgsPage({ me }: { me: Me }) {
  const [orgs, setOrgs] = useState<Org[] | undefined>(undefined);
  const [error, setError] = useState('');
  useEffect(() => {
    api('GET /api/v1/orgs', {}).then((r) => setOrgs(r.data.items), (err) => setError(describe(err)));
  }, []);
  return (
    <section>
      <h2>Orgs</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {orgs === undefined && !error && <p aria-busy="true">Loading</p>}
      {orgs?.length === 0 && <p class="muted">{me.isServerAdmin ? 'No org yet.' : 'You are not a member of any org.'}</p>}
      {orgs && orgs.length > 0 && (
        <table id="orgs">
          <thead><tr><th>Name</th><th>Slug</th><th class="wide">Created</th></tr></thead>
          <tbody>{orgs.map((o) => <tr key={o.id}><td>{o.name}</td><td>{o.slug}</td><td class="wide">{new Date(o.createdAt).toLocaleString()}</td></tr>)}</tbody>
        </table>
      )}
    </section>
  );
}
