// Domains: a domain serves nothing until the org proves it controls it. The page says exactly
// what to publish (the TXT token at its name, or delegation to the cluster's name servers),
// checks now on request, and lets a server admin mark it verified by hand.
import { useEffect, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';
import { useAction } from '../use-action.ts';

type Domain = Api['GET /api/v1/orgs/{orgId}/domains']['response']['items'][number];
type Zone = Api['GET /api/v1/orgs/{orgId}/domains/{domainId}/records']['response'];

/** The zone as every node serves it, and the NS records with glue that delegate it here. */
function ZoneView({ orgId, domain }: { orgId: string; domain: Domain }) {
  const [zone, setZone] = useState<Zone | undefined>();
  useEffect(() => {
    let gone = false;
    let again: ReturnType<typeof setTimeout> | undefined;
    const read = () =>
      api('GET /api/v1/orgs/{orgId}/domains/{domainId}/records', { params: { orgId, domainId: domain.id } }).then((r) => {
        if (gone) return;
        setZone(r.data);
        // Not published yet (a zone just verified, its actor still being placed): read again
        // shortly, or the page said "being published" until it was reloaded.
        if (r.data.serial === null) again = setTimeout(read, 1000);
      }, () => {});
    void read();
    return () => {
      gone = true;
      clearTimeout(again);
    };
  }, [domain.id, domain.status]);
  if (!zone) return null;
  if (zone.serial === null) return <p class="muted">The zone is being published.</p>;
  return (
    <>
      <p>Delegation: at the parent zone, publish</p>
      <pre class="delegation">{zone.delegation.map((d) => `${domain.name}. NS ${d.ns}.\n${d.addresses.map((a) => `${d.ns}. ${a.includes(':') ? 'AAAA' : 'A'} ${a}`).join('\n')}`).join('\n')}</pre>
      <details>
        <summary>Records every node serves (serial {zone.serial})</summary>
        <table class="records">
          <thead><tr><th>Name</th><th>Type</th><th>TTL</th><th>Value</th></tr></thead>
          <tbody>{zone.records.map((r, i) => <tr key={i}><td>{r.name}</td><td>{r.type}</td><td>{r.ttl}</td><td><code>{r.value}</code></td></tr>)}</tbody>
        </table>
      </details>
    </>
  );
}

export function DomainsTab({ orgId, canWrite, serverAdmin }: { orgId: string; canWrite: boolean; serverAdmin: boolean }) {
  const [domains, setDomains] = useState<Domain[]>([]);
  const load = () => api('GET /api/v1/orgs/{orgId}/domains', { params: { orgId } }).then((r) => setDomains(r.data.items), (err) => setError(describe(err)));
  const { error, setError, act } = useAction(load);
  useEffect(() => void load(), [orgId]);
  const create = (e: Event) => {
    e.preventDefault();
    const f = e.currentTarget as HTMLFormElement;
    void act(async () => {
      await api('POST /api/v1/orgs/{orgId}/domains', { params: { orgId }, body: { name: (f.elements.namedItem('name') as HTMLInputElement).value.trim().toLowerCase() } });
      f.reset();
    });
  };
  return (
    <div>
      {error && <p class="error" role="alert">{error}</p>}
      {domains.map((d) => (
        <article key={d.id} data-domain={d.name}>
          <header><strong>{d.name}</strong> <span class={`badge status ${d.status === 'verified' ? 'live' : 'dead'}`}>{d.status}</span></header>
          {d.status === 'pending' ? (
            <>
              <p>To prove this org controls {d.name}, publish at its current DNS provider either</p>
              <ul>
                <li>a TXT record <code>{d.verification.txt.name}</code> with the value <code class="txt-value">{d.verification.txt.value}</code>, or</li>
                <li>the delegation below (NS records to the cluster's name servers, with glue).</li>
              </ul>
              {canWrite && <button class="secondary verify" onClick={() => act(() => api('POST /api/v1/orgs/{orgId}/domains/{domainId}/verify', { params: { orgId, domainId: d.id }, body: null }))}>Check now</button>}{' '}
              {serverAdmin && <button class="secondary outline force" onClick={() => act(() => api('POST /api/v1/orgs/{orgId}/domains/{domainId}/verify', { params: { orgId, domainId: d.id }, body: { force: true } }))}>Mark verified (server admin)</button>}
            </>
          ) : (
            <p class="muted">Verified {d.verification.verifiedAt ? new Date(d.verification.verifiedAt).toLocaleString() : ''} by {d.verification.verifiedBy}. Serial {d.soaSerial}.</p>
          )}
          <ZoneView orgId={orgId} domain={d} />
          {canWrite && <footer><button class="secondary outline delete" onClick={() => confirm(`Delete ${d.name}?`) && act(() => api('DELETE /api/v1/orgs/{orgId}/domains/{domainId}', { params: { orgId, domainId: d.id } }))}>Delete</button></footer>}
        </article>
      ))}
      {domains.length === 0 && <p class="muted">No domain yet.</p>}
      {canWrite && (
        <form id="domain-form" onSubmit={create}>
          <fieldset role="group">
            <input name="name" placeholder="example.com" required aria-label="Domain name" />
            <button type="submit">Add domain</button>
          </fieldset>
        </form>
      )}
    </div>
  );
}
