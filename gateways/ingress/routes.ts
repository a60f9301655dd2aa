// The routes this node's ingress serves: every resource with its targets, read from
// PostgreSQL at start and again whenever an admin write announces a change (and every 30 s,
// to repair a lost message). Lookups are in memory; a connection never waits on a database.
// (The resource actor that will publish route snapshots with target health and site
// placement is not built yet; this table is what the ingress reads until then.)
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import type { Logger } from '../../core/log.ts';
import { sql, type DatabasePool } from '../../persistence/db.ts';
import type { Valkey } from '../../persistence/valkey.ts';

export interface RouteTarget {
  id: string;
  siteId: string;
  host: string;
  port: number;
  scheme: 'http' | 'https' | 'tcp' | 'udp';
  enabled: boolean;
  weight: number;
}

export interface Route {
  resourceId: string;
  protocol: 'http' | 'tcp' | 'udp';
  hostname: string | null;
  port: number | null;
  tls: boolean;
  enabled: boolean;
  targets: RouteTarget[];
}

const row = z.object({
  resource_id: z.string(), protocol: z.enum(['http', 'tcp', 'udp']), hostname: z.string().nullable(), proxy_port: z.number().nullable(), tls: z.boolean(), enabled: z.boolean(),
  targets: z.array(z.object({ id: z.string(), siteId: z.string(), host: z.string(), port: z.number(), scheme: z.enum(['http', 'https', 'tcp', 'udp']), enabled: z.boolean(), weight: z.number() })),
});

export class RouteTable extends EventEmitter {
  readonly #db: DatabasePool;
  readonly #valkey: Valkey;
  readonly #log: Logger;
  #routes: Route[] = [];
  #timer: NodeJS.Timeout | undefined;
  #pending: NodeJS.Timeout | undefined;

  constructor(deps: { db: DatabasePool; valkey: Valkey; logger: Logger }) {
    super();
    this.#db = deps.db;
    this.#valkey = deps.valkey;
    this.#log = deps.logger.child({ component: 'routes' });
  }

  async start(): Promise<void> {
    await this.reload();
    await this.#valkey.subscribe('changes', (m) => {
      const kind = (m as { kind?: string }).kind;
      if (kind === 'resource' || kind === 'target' || kind === 'site' || kind === 'org') this.#schedule();
    });
    this.#timer = setInterval(() => this.#schedule(), 30_000);
  }

  stop() {
    clearInterval(this.#timer);
    clearTimeout(this.#pending);
  }

  #schedule() {
    if (this.#pending) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      void this.reload().catch((err) => this.#log.warn({ err: (err as Error).message }, 'route reload failed; keeping the last table'));
    }, 20);
  }

  async reload(): Promise<void> {
    const rows = await this.#db.any(sql.type(row)`
      SELECT r.id AS resource_id, r.protocol, r.hostname, r.proxy_port, r.tls, r.enabled,
        COALESCE(json_agg(json_build_object('id', t.id, 'siteId', t.site_id, 'host', t.host, 'port', t.port, 'scheme', t.scheme, 'enabled', t.enabled, 'weight', t.weight))
          FILTER (WHERE t.id IS NOT NULL), '[]') AS targets
      FROM resources r LEFT JOIN targets t ON t.resource_id = r.id GROUP BY r.id`);
    this.#routes = rows.map((r) => ({ resourceId: r.resource_id, protocol: r.protocol, hostname: r.hostname, port: r.proxy_port, tls: r.tls, enabled: r.enabled, targets: r.targets }));
    this.emit('updated', this.#routes);
  }

  all(): readonly Route[] {
    return this.#routes;
  }

  byId(resourceId: string): Route | undefined {
    return this.#routes.find((r) => r.resourceId === resourceId);
  }
}

/** Weighted random choice. */
export function pickWeighted<T extends { weight: number }>(items: T[], random = Math.random): T | undefined {
  const total = items.reduce((s, t) => s + t.weight, 0);
  let x = random() * total;
  for (const t of items) if ((x -= t.weight) < 0) return t;
  return items.at(-1);
}
