// The org's audit log (who changed what, from which node) and access log (who was let in or
// turned away at its resources, by which method or rule), newest first.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';

type Audit = Api['GET /api/v1/orgs/{orgId}/audit-log']['response']['items'][number];
type Access = Api['GET /api/v1/orgs/{orgId}/access-log']['response']['items'][number];

export function LogsTab({ orgId }: { orgId: string }) {
  const [audit, setAudit] = useState<Audit[]>([]);
  const [access, setAccess] = useState<Access[]>([]);
  const [error, setError] = useState('');
  useEffect(() => {
    api('GET /api/v1/orgs/{orgId}/audit-log', { params: { orgId } }).then((r) => setAudit(r.data.items), (err) => setError(describe(err)));
    api('GET /api/v1/orgs/{orgId}/access-log', { params: { orgId } }).then((r) => setAccess(r.data.items), () => {});
  }, [orgId]);
  return (
    <div>
      {error && <p class="error" role="alert">{error}</p>}
      <h3>Audit log</h3>
      <table id="audit">
        <thead><tr><th>When</th><th>Action</th><th>By</th><th class="wide">Node</th></tr></thead>
        <tbody>{audit.map((a) => <tr key={a.id}><td>{new Date(a.at).toLocaleString()}</td><td>{a.action} <span class="muted">{a.targetId}</span></td><td>{a.actorType}{a.actorId ? ` ${a.actorId.slice(0, 8)}` : ''}</td><td class="wide">{a.nodeId}</td></tr>)}</tbody>
      </table>
      <h3>Access log</h3>
      <table id="access-log">
        <thead><tr><th>When</th><th>Decision</th><th>Method or rule</th><th>Client</th><th class="wide">Count</th></tr></thead>
        <tbody>{access.map((a) => <tr key={a.id} class={a.decision === 'denied' ? 'error' : ''}><td>{new Date(a.at).toLocaleString()}</td><td>{a.decision}</td><td>{a.method ?? '-'} <span class="muted">{a.reason}</span></td><td>{a.client}</td><td class="wide">{a.count}</td></tr>)}</tbody>
      </table>
      {access.length === 0 && <p class="muted">No access decision yet (resources without access control are not logged).</p>}
    </div>
  );
}
