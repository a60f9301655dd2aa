// One org: its sites, domains, resources and certificates. Write controls show only for org
// admins and server admins; members read. The API decides either way.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Me } from '../app.tsx';
import { CertificatesTab } from './certificates.tsx';
import { DomainsTab } from './domains.tsx';
import { LogsTab } from './logs.tsx';
import { MembersTab } from './members.tsx';
import { ResourcesTab } from './resources.tsx';
import { SitesTab } from './sites.tsx';

const TABS = { sites: 'Sites', domains: 'Domains', resources: 'Resources', certificates: 'Certificates', members: 'Members and keys', logs: 'Logs' } as const;
export type Tab = keyof typeof TABS;

export function OrgPage({ me, orgId, tab }: { me: Me; orgId: string; tab: Tab }) {
  const [name, setName] = useState('');
  const [canWrite, setCanWrite] = useState(me.isServerAdmin);
  const [error, setError] = useState('');
  useEffect(() => {
    api('GET /api/v1/orgs', {}).then((r) => setName(r.data.items.find((o) => o.id === orgId)?.name ?? ''), (err) => setError(describe(err)));
    if (!me.isServerAdmin) api('GET /api/v1/orgs/{orgId}/members', { params: { orgId } }).then((r) => setCanWrite(r.data.items.some((m) => m.userId === me.id && m.role === 'admin')), () => setCanWrite(false));
  }, [orgId]);
  return (
    <section>
      <hgroup>
        <h2 id="org-name">{name || 'Org'}</h2>
        <p class="muted">{canWrite ? 'You can change this org.' : 'You can read this org.'}</p>
      </hgroup>
      {error && <p class="error" role="alert">{error}</p>}
      <nav>
        <ul>{(Object.keys(TABS) as Tab[]).map((t) => <li key={t}><a href={`#/orgs/${orgId}/${t}`} aria-current={t === tab ? 'page' : undefined}>{TABS[t]}</a></li>)}</ul>
      </nav>
      {tab === 'sites' && <SitesTab orgId={orgId} canWrite={canWrite} />}
      {tab === 'domains' && <DomainsTab orgId={orgId} canWrite={canWrite} serverAdmin={me.isServerAdmin} />}
      {tab === 'resources' && <ResourcesTab orgId={orgId} canWrite={canWrite} />}
      {tab === 'certificates' && <CertificatesTab orgId={orgId} />}
      {tab === 'members' && <MembersTab orgId={orgId} canWrite={canWrite} serverAdmin={me.isServerAdmin} />}
      {tab === 'logs' && <LogsTab orgId={orgId} />}
    </section>
  );
}
