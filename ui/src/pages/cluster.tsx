// The cluster as it keeps itself alive: nodes with their lease age, incarnation and actors by
// kind; which node runs each site, resource and zone; and a live feed of members joining,
// dying and leaving and of actors moving, pushed by the node this page is connected to
// (server-sent events). When that node dies the feed reconnects through the load balancer to
// another and the page reads the state again, so it never needs a reload.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, describe } from '../api.ts';
import type { Api } from '../api-types.ts';

type Node = Api['GET /api/v1/nodes']['response']['items'][number];
type Placed = Api['GET /api/v1/cluster/placement']['response']['items'][number];
type Event =
  | { type: 'member'; change: 'join' | 'dead' | 'leave'; node: string; incarnation: string; reason?: string; at: number }
  | { type: 'ownership'; change: 'claimed' | 'released'; kind: string; ids: string[]; node: string; at: number };

const KINDS: Record<string, string> = { site: 'Site', resource: 'Resource', 'dns-zone': 'Zone', 'cert-issuer': 'Certificates' };

export function ClusterPage() {
  const [nodes, setNodes] = useState<Node[]>([]);
  const [placement, setPlacement] = useState<Placed[]>([]);
  const [feed, setFeed] = useState<Array<{ at: number; text: string; dead?: boolean }>>([]);
  const [viaNode, setViaNode] = useState('');
  const [error, setError] = useState('');
  const names = useRef(new Map<string, string>());
  /** Live node ids at the last read: a node missing from the next read died or left while the feed was away. */
  const known = useRef<Set<string> | undefined>(undefined);
  const note = (text: string, dead = false) => setFeed((f) => [{ at: Date.now(), text, dead }, ...f].slice(0, 200));

  const refresh = async () => {
    try {
      const [n, p] = await Promise.all([api('GET /api/v1/nodes', {}), api('GET /api/v1/cluster/placement', {})]);
      const now = new Set(n.data.items.map((x) => x.id));
      for (const id of known.current ?? []) if (!now.has(id)) note(`${id} is no longer live`, true);
      known.current = now;
      setNodes(n.data.items);
      setPlacement(p.data.items);
      for (const x of p.data.items) names.current.set(`${x.kind}:${x.id}`, x.name);
      setError('');
    } catch (err) {
      setError(describe(err));
    }
  };

  useEffect(() => {
    void refresh();
    const source = new EventSource('/api/v1/cluster/events');
    source.addEventListener('hello', (m) => {
      const { node } = JSON.parse((m as MessageEvent).data) as { node: string };
      setViaNode(node);
      void refresh(); // (re)connected: what happened meanwhile is in the state
    });
    source.addEventListener('member', (m) => {
      const e = JSON.parse((m as MessageEvent).data) as Extract<Event, { type: 'member' }>;
      note(`${e.node} ${e.change === 'dead' ? `died (${e.reason ?? 'lease'})` : e.change === 'join' ? 'joined' : 'left'}`, e.change === 'dead');
      // Already said: the next read must not say it again.
      if (e.change !== 'join') known.current?.delete(e.node);
      void refresh();
    });
    source.addEventListener('ownership', (m) => {
      const e = JSON.parse((m as MessageEvent).data) as Extract<Event, { type: 'ownership' }>;
      if (e.change === 'claimed') {
        setPlacement((p) => {
          // An actor this page has not seen yet (created since it loaded): read the state again.
          if (e.kind !== 'probe' && e.ids.some((id) => !p.some((x) => x.kind === e.kind && x.id === id))) void refresh();
          return p.map((x) => (x.kind === e.kind && e.ids.includes(x.id) ? { ...x, node: e.node } : x));
        });
        const shown = e.ids.slice(0, 3).map((id) => names.current.get(`${e.kind}:${id}`) ?? id.slice(0, 8)).join(', ');
        if (e.kind !== 'probe') note(`${e.node} now runs ${KINDS[e.kind] ?? e.kind} ${shown}${e.ids.length > 3 ? ` and ${e.ids.length - 3} more` : ''}`);
      }
    });
    source.onerror = () => note('live feed interrupted; reconnecting', true);
    return () => source.close();
  }, []);

  return (
    <section>
      <h2>Cluster</h2>
      {error && <p class="error" role="alert">{error}</p>}
      <h3>Nodes</h3>
      <table id="nodes">
        <thead><tr><th>Node</th><th class="wide">Incarnation</th><th>Lease age</th><th>Actors</th><th class="wide">Addresses</th></tr></thead>
        <tbody>
          {nodes.map((n) => (
            <tr key={n.id} data-node={n.id}>
              <td><span class="badge live">{n.id}</span></td>
              <td class="wide"><code>{n.incarnation}</code></td>
              <td>{n.leaseAgeMs === null ? '?' : `${n.leaseAgeMs} ms`}</td>
              <td>{n.actors ? Object.entries(n.actors).filter(([k, v]) => k !== 'probe' && v > 0).map(([k, v]) => `${v} ${KINDS[k] ?? k}`).join(', ') || 'none' : 'no answer'}</td>
              <td class="wide">{n.addresses.join(', ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Who runs what</h3>
      <table id="placement">
        <thead><tr><th>Kind</th><th>Name</th><th>Node</th></tr></thead>
        <tbody>
          {placement.map((x) => (
            <tr key={`${x.kind}:${x.id}`} data-kind={x.kind} data-id={x.id}>
              <td>{KINDS[x.kind] ?? x.kind}</td>
              <td>{x.name}</td>
              <td class="node">{x.node ?? <span class="muted">none (moving)</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Live <small class="muted">{viaNode && `through ${viaNode}`}</small></h3>
      <ul class="events" id="events">
        {feed.map((f, i) => <li key={`${f.at}-${i}`} class={f.dead ? 'error' : ''}>{new Date(f.at).toLocaleTimeString()} {f.text}</li>)}
      </ul>
    </section>
  );
}
