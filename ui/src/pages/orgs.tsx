// Orgs the signed-in user can see (all of them for server admins), and creating one.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';
import type { Me } from '../app.tsx';

type Org = Api['GET /api/v1/orgs']['response']['items'][number];

export function OrgsPage({ me }: { me: Me }) {
  const [orgs, setOrgs] = useState<Org[] | undefined>(undefined);
  const [error, setError] = useState('');
  const load = () => api('GET /api/v1/orgs', {}).then((r) => setOrgs(r.data.items), (err) => setError(describe(err)));
  useEffect(() => void load(), []);
  const create = async (e: Event) => {
    e.preventDefault();
    const f = e.currentTarget as HTMLFormElement;
    const v = (n: string) => (f.elements.namedItem(n) as HTMLInputElement).value.trim();
    try {
      await api('POST /api/v1/orgs', { body: { name: v('name'), slug: v('slug') } });
      f.reset();
      setError('');
      await load();
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <section>
      <h2>Orgs</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {orgs === undefined && !error && <p aria-busy="true">Loading</p>}
      {orgs?.length === 0 && <p class="muted">{me.isServerAdmin ? 'No org yet.' : 'You are not a member of any org.'}</p>}
      {orgs && orgs.length > 0 && (
        <table id="orgs">
          <thead><tr><th>Name</th><th>Slug</th><th class="wide">Created</th></tr></thead>
          <tbody>{orgs.map((o) => <tr key={o.id} data-org={o.slug}><td><a href={`#/orgs/${o.id}/sites`}>{o.name}</a></td><td>{o.slug}</td><td class="wide">{new Date(o.createdAt).toLocaleString()}</td></tr>)}</tbody>
        </table>
      )}
      {me.isServerAdmin && (
        <form id="org-form" onSubmit={create}>
          <fieldset role="group">
            <input name="name" placeholder="Name" required aria-label="Org name" />
            <input name="slug" placeholder="slug" required pattern="[a-z0-9][a-z0-9-]{0,62}" aria-label="Org slug" />
            <button type="submit">Create org</button>
          </fieldset>
        </form>
      )}
    </section>
  );
}
