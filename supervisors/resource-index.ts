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
  /** Which running copy of each actor last wrote its entry: a copy stopping late must not erase its successor's. */
  readonly #writer = new Map<string, object>();

  /** What resource `id` routes to now; null once it is gone (deleted, or stopped here). `writer`: the actor copy telling. */
  set(id: string, route: IndexedRoute | null, writer: object = this) {
    if (!route && this.#writer.has(id) && this.#writer.get(id) !== writer) return;
    if (route) this.#writer.set(id, writer);
    else this.#writer.delete(id);
    for (const siteId of this.#byResource.get(id)?.siteIds ?? []) {
      const ids = this.#bySite.get(siteId);
      ids?.delete(id);
      if (ids?.size === 0) this.#bySite.delete(siteId);
    }
    if (!route) {
      this.#byResource.delete(id);
      return;
    }
    this.#byResource.set(id, route);
    for (const siteId of route.siteIds) {
      let ids = this.#bySite.get(siteId);
      if (!ids) this.#bySite.set(siteId, (ids = new Set()));
      ids.add(id);
    }
  }

  /** Local resources with a target on `siteId`. */
  bySite(siteId: string): string[] {
    return [...(this.#bySite.get(siteId) ?? [])];
  }

  hostname(id: string): string | null | undefined {
    return this.#byResource.get(id)?.hostname;
  }

  /** Local resources whose hostname is `name` or lies under it (a scan: for rare changes, such as a domain's). */
  under(name: string): string[] {
    const n = name.toLowerCase();
    const out: string[] = [];
    for (const [id, r] of this.#byResource) {
      const h = r.hostname?.toLowerCase();
      if (h && (h === n || h.endsWith(`.${n}`))) out.push(id);
    }
    return out;
  }
}

/** `name` and every name above it, most specific first: the zones it may belong to. */
export function enclosingNames(name: string): string[] {
  const labels = name.toLowerCase().replace(/\.$/, '').split('.');
  return labels.map((_, i) => labels.slice(i).join('.')).filter(Boolean);
}
