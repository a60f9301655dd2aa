// Which sites and hostname each resource actor on this node routes to, as it last published:
// news about one site (a move, a health report, a deletion) or one DNS name then wakes only
// the actors it concerns. Waking every local actor instead grew with the number of sites on
// every node: at 10,000 sites, each site move woke 3,333 resource actors per node.
export interface IndexedRoute {
  hostname: string | null;
  siteIds: readonly string[];
}

export class ResourceIndex {
  readonly #byResource = new Map<string, IndexedRoute>();
  readonly #bySite = new Map<string, Set<string>>();
  /** Resources by their hostname and every name above it (a write at a name finds what lies under it without a scan: one per resource created was quadratic). */
  readonly #byName = new Map<string, Set<string>>();
  /** Resources by the nodes their last published route names (owners and standbys): a node's death finds the routes naming it without a scan. */
  readonly #byNode = new Map<string, Set<string>>();
  readonly #nodesOf = new Map<string, readonly string[]>();
  /** Which running copy of each actor last wrote its entry: a copy stopping late must not erase its successor's. */
  readonly #writer = new Map<string, object>();

  /** What resource `id` routes to now; null once it is gone (deleted, or stopped here). `writer`: the actor copy telling. */
  set(id: string, route: IndexedRoute | null, writer: object = this) {
    if (!route && this.#writer.has(id) && this.#writer.get(id) !== writer) return;
    if (route) this.#writer.set(id, writer);
    else this.#writer.delete(id);
    const old = this.#byResource.get(id);
    for (const siteId of old?.siteIds ?? []) drop(this.#bySite, siteId, id);
    for (const name of old?.hostname ? enclosingNames(old.hostname) : []) drop(this.#byName, name, id);
    if (!route) {
      this.#byResource.delete(id);
      this.named(id, [], writer);
      return;
    }
    this.#byResource.set(id, route);
    for (const siteId of route.siteIds) add(this.#bySite, siteId, id);
    for (const name of route.hostname ? enclosingNames(route.hostname) : []) add(this.#byName, name, id);
  }

  /** The nodes resource `id`'s route names as it publishes it now (owners and standbys); `writer` as for `set`. */
  named(id: string, nodes: readonly string[], writer: object = this) {
    if (this.#writer.has(id) && this.#writer.get(id) !== writer) return;
    for (const node of this.#nodesOf.get(id) ?? []) drop(this.#byNode, node, id);
    if (nodes.length === 0) return void this.#nodesOf.delete(id);
    this.#nodesOf.set(id, nodes);
    for (const node of nodes) add(this.#byNode, node, id);
  }

  /** Local resources whose route names `node`. */
  naming(node: string): string[] {
    return [...(this.#byNode.get(node) ?? [])];
  }

  /** Local resources with a target on `siteId`. */
  bySite(siteId: string): string[] {
    return [...(this.#bySite.get(siteId) ?? [])];
  }

  hostname(id: string): string | null | undefined {
    return this.#byResource.get(id)?.hostname;
  }

  /** Local resources whose hostname is `name` or lies under it. */
  under(name: string): string[] {
    return [...(this.#byName.get(name.toLowerCase().replace(/\.$/, '')) ?? [])];
  }
}

function add(index: Map<string, Set<string>>, key: string, id: string) {
  let ids = index.get(key);
  if (!ids) index.set(key, (ids = new Set()));
  ids.add(id);
}

function drop(index: Map<string, Set<string>>, key: string, id: string) {
  const ids = index.get(key);
  ids?.delete(id);
  if (ids?.size === 0) index.delete(key);
}

/** `name` and every name above it, most specific first: the zones it may belong to. */
export function enclosingNames(name: string): string[] {
  const labels = name.toLowerCase().replace(/\.$/, '').split('.');
  return labels.map((_, i) => labels.slice(i).join('.')).filter(Boolean);
}
