// A resource's access control: who may reach it (methods), rules evaluated before them,
// share links (the URL shown once), and ending every session. The edge's view of it is in the
// resource's status; this is the stored policy.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';
import { useAction } from '../use-action.ts';

type Access = Api['GET /api/v1/orgs/{orgId}/resources/{resourceId}/access']['response'];
type Rule = Api['POST /api/v1/orgs/{orgId}/resources/{resourceId}/access/rules']['body'];

export function AccessPanel({ orgId, resourceId, canWrite }: { orgId: string; resourceId: string; canWrite: boolean }) {
  const params = { orgId, resourceId };
  const [access, setAccess] = useState<Access | undefined>();
  const [link, setLink] = useState('');
  const [note, setNote] = useState('');
  const load = () => api('GET /api/v1/orgs/{orgId}/resources/{resourceId}/access', { params }).then((r) => setAccess(r.data), (err) => setError(describe(err)));
  const action = useAction(load);
  const { error, setError } = action;
  useEffect(() => void load(), [resourceId]);
  /** Runs a change; the note shown after it is the text `fn` returns, else `done`. */
  const act = async (fn: () => Promise<unknown>, done = '') => {
    let ok = false;
    const said = await action.act(async () => {
      const r = await fn();
      ok = true;
      return r;
    });
    if (ok) setNote(typeof said === 'string' ? said : done);
  };
  const value = (f: HTMLFormElement, n: string) => (f.elements.namedItem(n) as HTMLInputElement).value.trim();
  if (!access) return error ? <p class="error" role="alert">{error}</p> : null;
  const put = (body: Api['PUT /api/v1/orgs/{orgId}/resources/{resourceId}/access']['body']) => act(() => api('PUT /api/v1/orgs/{orgId}/resources/{resourceId}/access', { params, body }));
  return (
    <div class="access">
      {error && <p class="error" role="alert">{error}</p>}
      {note && <p class="muted" role="status">{note}</p>}
      <fieldset disabled={!canWrite}>
        <label><input type="checkbox" role="switch" name="blockAccess" checked={access.blockAccess} onChange={(e) => put({ blockAccess: (e.currentTarget as HTMLInputElement).checked })} /> Block all access</label>
        <label><input type="checkbox" role="switch" name="sso" checked={access.sso.enabled} onChange={(e) => put({ sso: { enabled: (e.currentTarget as HTMLInputElement).checked } })} /> Sign-in with cluster accounts (members of the org)</label>
        <label><input type="checkbox" role="switch" name="basicAuth" checked={access.basicAuth} onChange={(e) => put({ basicAuth: (e.currentTarget as HTMLInputElement).checked })} /> HTTP basic auth (resource password or account)</label>
      </fieldset>
      {canWrite && (
        <form class="secret-form" onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget;
          const kind = value(f, 'kind') as 'password' | 'pin';
          const secret = value(f, 'secret');
          void act(() => (kind === 'password'
            ? api('PUT /api/v1/orgs/{orgId}/resources/{resourceId}/access/password', { params, body: { password: secret } })
            : api('PUT /api/v1/orgs/{orgId}/resources/{resourceId}/access/pin', { params, body: { pin: secret } })), `${kind === 'pin' ? 'PIN' : 'Password'} set; sessions made with the old one have ended.`).then(() => f.reset());
        }}>
          <fieldset role="group">
            <select name="kind" aria-label="Secret"><option value="password">Password {access.password ? '(set)' : ''}</option><option value="pin">PIN {access.pin ? '(set)' : ''}</option></select>
            <input name="secret" type="password" required aria-label="New password or PIN" placeholder="new password (8+) or PIN (6-9 digits)" autocomplete="new-password" />
            <button type="submit">Set</button>
          </fieldset>
        </form>
      )}
      <h4>Rules <small class="muted">first match by priority: allow skips sign-in, deny refuses, pass goes on</small></h4>
      <table class="rules">
        <tbody>{access.rules.map((r) => (
          <tr key={r.id}><td>{r.priority}</td><td>{r.match}</td><td><code>{r.value}</code></td><td>{r.action}</td>
            <td>{canWrite && <button class="secondary outline" onClick={() => act(() => api('DELETE /api/v1/orgs/{orgId}/resources/{resourceId}/access/rules/{ruleId}', { params: { ...params, ruleId: r.id } }))}>Delete</button>}</td></tr>
        ))}</tbody>
      </table>
      {canWrite && (
        <form class="rule-form" onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget;
          const body: Rule = { priority: Number(value(f, 'priority')), match: value(f, 'match') as Rule['match'], value: value(f, 'value'), action: value(f, 'action') as Rule['action'] };
          void act(() => api('POST /api/v1/orgs/{orgId}/resources/{resourceId}/access/rules', { params, body })).then(() => f.reset());
        }}>
          <fieldset role="group">
            <input name="priority" type="number" min={0} required placeholder="priority" aria-label="Priority" />
            <select name="match" aria-label="Match"><option value="ip">IP</option><option value="cidr">CIDR</option><option value="path">path</option><option value="country">country</option></select>
            <input name="value" required placeholder="10.0.0.0/8, /admin*, SE" aria-label="Value" />
            <select name="action" aria-label="Action"><option value="allow">allow</option><option value="deny">deny</option><option value="pass">pass</option></select>
            <button type="submit">Add rule</button>
          </fieldset>
        </form>
      )}
      <h4>Share links</h4>
      {link && <article class="link-shown"><p>The link, shown only now:</p><pre class="share-url">{link}</pre><button class="secondary" onClick={() => setLink('')}>I have copied it</button></article>}
      <table class="links">
        <tbody>{access.shareLinks.map((l) => (
          <tr key={l.id}><td>{l.title}</td><td>{l.pathPrefix ?? '/'}</td><td>{l.expiresAt ? `until ${new Date(l.expiresAt).toLocaleString()}` : 'no expiry'}</td>
            <td>{canWrite && <button class="secondary outline" onClick={() => act(() => api('DELETE /api/v1/orgs/{orgId}/resources/{resourceId}/share-links/{linkId}', { params: { ...params, linkId: l.id } }))}>Delete</button>}</td></tr>
        ))}</tbody>
      </table>
      {canWrite && (
        <form class="link-form" onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget;
          const hours = Number(value(f, 'hours') || 0);
          const prefix = value(f, 'pathPrefix');
          void act(async () => {
            const r = await api('POST /api/v1/orgs/{orgId}/resources/{resourceId}/share-links', { params, body: { title: value(f, 'title'), ...(hours > 0 ? { expiresInSeconds: Math.round(hours * 3600) } : {}), ...(prefix ? { pathPrefix: prefix } : {}), makesSession: (f.elements.namedItem('makesSession') as HTMLInputElement).checked } });
            setLink(r.data.url);
            f.reset();
          });
        }}>
          <fieldset role="group">
            <input name="title" required placeholder="title" aria-label="Link title" />
            <input name="pathPrefix" placeholder="/path (optional)" aria-label="Path prefix" />
            <input name="hours" type="number" min={0} step="any" placeholder="hours (0: no expiry)" aria-label="Hours it lasts" />
            <button type="submit">Create link</button>
          </fieldset>
          <label><input type="checkbox" name="makesSession" /> A browser that follows it gets a session</label>
        </form>
      )}
      {canWrite && <p><button class="secondary outline end-sessions" onClick={() => act(async () => {
        const r = await api('DELETE /api/v1/orgs/{orgId}/resources/{resourceId}/sessions', { params });
        return `${(r.data as { revoked: number }).revoked} sessions ended on every node.`;
      })}>End every session</button></p>}
    </div>
  );
}
