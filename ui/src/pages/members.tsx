// Members and their roles (admins change them; a server admin adds any user), and the org's
// API keys: the key shown once, the actions it may use, revoking it.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';
import { useAction } from '../use-action.ts';

type Member = Api['GET /api/v1/orgs/{orgId}/members']['response']['items'][number];
type Key = Api['GET /api/v1/orgs/{orgId}/api-keys']['response']['items'][number];
type User = Api['GET /api/v1/users']['response']['items'][number];
type Action = Api['POST /api/v1/orgs/{orgId}/api-keys']['body']['actions'][number];
const ACTIONS: Action[] = ['org:read', 'members:read', 'members:write', 'sites:read', 'sites:write', 'domains:read', 'domains:write', 'resources:read', 'resources:write', 'certificates:read', 'audit:read'];

export function MembersTab({ orgId, canWrite, serverAdmin }: { orgId: string; canWrite: boolean; serverAdmin: boolean }) {
  const [members, setMembers] = useState<Member[]>([]);
  const [users, setUsers] = useState<User[]>([]);
  const [keys, setKeys] = useState<Key[]>([]);
  const [newKey, setNewKey] = useState('');
  const load = async () => {
    try {
      setMembers((await api('GET /api/v1/orgs/{orgId}/members', { params: { orgId } })).data.items);
      if (canWrite) setKeys((await api('GET /api/v1/orgs/{orgId}/api-keys', { params: { orgId } })).data.items);
      if (serverAdmin) setUsers((await api('GET /api/v1/users', { query: { limit: '200' } })).data.items);
    } catch (err) {
      setError(describe(err));
    }
  };
  const { error, setError, act } = useAction(load);
  useEffect(() => void load(), [orgId, canWrite]);
  const role = (userId: string, r: 'admin' | 'member') => act(() => api('PUT /api/v1/orgs/{orgId}/members/{userId}', { params: { orgId, userId }, body: { role: r } }));
  const candidates = users.filter((u) => !members.some((m) => m.userId === u.id));
  return (
    <div>
      {error && <p class="error" role="alert">{error}</p>}
      <h3>Members</h3>
      <table id="members">
        <thead><tr><th>E-mail</th><th>Role</th>{canWrite && <th />}</tr></thead>
        <tbody>
          {members.map((m) => (
            <tr key={m.userId} data-member={m.email}>
              <td>{m.email}</td>
              <td>{canWrite ? (
                <select aria-label={`Role of ${m.email}`} value={m.role} onChange={(e) => role(m.userId, (e.currentTarget as HTMLSelectElement).value as 'admin')}><option value="admin">admin</option><option value="member">member</option></select>
              ) : m.role}</td>
              {canWrite && <td><button class="secondary outline" onClick={() => confirm(`Remove ${m.email}?`) && act(() => api('DELETE /api/v1/orgs/{orgId}/members/{userId}', { params: { orgId, userId: m.userId } }))}>Remove</button></td>}
            </tr>
          ))}
        </tbody>
      </table>
      {serverAdmin && candidates.length > 0 && (
        <form id="member-form" onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget;
          void role((f.elements.namedItem('userId') as HTMLSelectElement).value, (f.elements.namedItem('role') as HTMLSelectElement).value as 'admin');
        }}>
          <fieldset role="group">
            <select name="userId" aria-label="User">{candidates.map((u) => <option key={u.id} value={u.id}>{u.email}</option>)}</select>
            <select name="role" aria-label="Role"><option value="member">member</option><option value="admin">admin</option></select>
            <button type="submit">Add member</button>
          </fieldset>
        </form>
      )}
      {canWrite && (
        <>
          <h3>API keys</h3>
          {newKey && (
            <article id="key-shown">
              <p>The new key, shown only now:</p>
              <pre id="api-key">{newKey}</pre>
              <button class="secondary" onClick={() => setNewKey('')}>I have copied it</button>
            </article>
          )}
          <table id="api-keys">
            <thead><tr><th>Name</th><th>Actions</th><th class="wide">Last used</th><th /></tr></thead>
            <tbody>
              {keys.map((k) => (
                <tr key={k.id} data-key={k.name}>
                  <td>{k.name} <code class="muted">ck_{k.prefix}_…</code></td>
                  <td>{k.actions.join(', ')}</td>
                  <td class="wide">{k.lastUsedAt ? new Date(k.lastUsedAt).toLocaleString() : 'never'}</td>
                  <td>{k.revoked ? <span class="badge dead">revoked</span> : <button class="secondary outline" onClick={() => act(() => api('DELETE /api/v1/orgs/{orgId}/api-keys/{keyId}', { params: { orgId, keyId: k.id } }))}>Revoke</button>}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <form id="key-form" onSubmit={(e) => {
            e.preventDefault();
            const f = e.currentTarget;
            const actions = ACTIONS.filter((a) => (f.elements.namedItem(a) as HTMLInputElement).checked);
            void act(async () => {
              const r = await api('POST /api/v1/orgs/{orgId}/api-keys', { params: { orgId }, body: { name: (f.elements.namedItem('name') as HTMLInputElement).value.trim(), actions } });
              setNewKey(r.data.key);
              f.reset();
            });
          }}>
            <input name="name" placeholder="Key name" required aria-label="Key name" />
            <fieldset>
              <legend>Actions it may use</legend>
              {ACTIONS.map((a) => <label key={a}><input type="checkbox" name={a} /> {a}</label>)}
            </fieldset>
            <button type="submit">Create API key</button>
          </form>
        </>
      )}
    </div>
  );
}
