// The dashboard's shell: who is signed in, the navigation (hash routes, so any node serves
// every page from one index.html), and the page. Roles decide what is shown; the API decides
// what is allowed.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from './api.ts';
import type { Api } from './api-types.ts';
import { AccountPage } from './pages/account.tsx';
import { ClusterPage } from './pages/cluster.tsx';
import { OrgPage, type Tab } from './pages/org.tsx';
import { OrgsPage } from './pages/orgs.tsx';
import { SignIn } from './pages/sign-in.tsx';

export type Me = Extract<Api['GET /api/v1/auth/me']['response'], { type: 'user' }>;

const hashRoute = () => location.hash.replace(/^#/, '').split('?')[0] || '';

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [route, setRoute] = useState(hashRoute());
  const [error, setError] = useState('');
  useEffect(() => {
    const on = () => setRoute(hashRoute());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const load = () => api('GET /api/v1/auth/me', {}).then((r) => setMe(r.data.type === 'user' ? r.data : null), () => setMe(null));
  useEffect(() => void load(), []);

  if (me === undefined) return <main class="container" aria-busy="true" />;
  if (me === null) return <SignIn onSignedIn={load} />;
  const org = /^\/orgs\/([0-9a-f-]{36})(?:\/(sites|domains|resources|certificates|members|logs))?$/.exec(route);
  const page = org ? '/org' : route === '/account' ? '/account' : route === '/orgs' || !me.isServerAdmin ? '/orgs' : '/cluster';
  const signOut = async () => {
    try {
      await api('POST /api/v1/auth/logout', {});
      setMe(null);
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <div class="shell">
      <header class="container">
        <nav>
          <ul>
            <li><strong>Cluster</strong></li>
          </ul>
          <ul>
            {me.isServerAdmin && <li><a href="#/cluster" aria-current={page === '/cluster' ? 'page' : undefined}>Cluster</a></li>}
            <li><a href="#/orgs" aria-current={page === '/orgs' || page === '/org' ? 'page' : undefined}>Orgs</a></li>
            <li><a href="#/account" class="secondary" id="account" aria-current={page === '/account' ? 'page' : undefined}>{me.email}</a></li>
            <li><button class="secondary outline" id="sign-out" onClick={signOut}>Sign out</button></li>
          </ul>
        </nav>
        {error && <p class="error" role="alert">{error}</p>}
      </header>
      <main class="container">{page === '/account' ? <AccountPage me={me} reload={load} /> : page === '/cluster' ? <ClusterPage /> : org ? <OrgPage me={me} orgId={org[1]!} tab={(org[2] ?? 'sites') as Tab} /> : <OrgsPage me={me} />}</main>
    </div>
  );
}
