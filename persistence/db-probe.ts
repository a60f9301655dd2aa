// The readiness probe's own PostgreSQL connection. Probing through the pool told "busy" from
// "down" badly: in a mass start every pooled connection was taken and `SELECT 1` queued behind
// them past its deadline, so nodes reported PostgreSQL down (and load balancers would take a
// node out) while it answered everything. One connection kept for the probe answers whether
// the server does; a connection that fails or misses a deadline is dropped and made again.
import pg from 'pg';
import type { Secret } from '../core/secret.ts';

export class PostgresProbe {
  readonly #url: Secret;
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;

  constructor(url: Secret) {
    this.#url = url;
  }

  /** True when PostgreSQL answered `SELECT 1` on the probe's connection within `timeoutMs` (connecting included). */
  async ping(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const probe = (async () => {
      const client = await this.#connect(timeoutMs);
      await client.query('SELECT 1');
      return true as const;
    })().catch(() => false as const);
    try {
      const up = await Promise.race([probe, deadline]);
      if (!up) this.#drop();
      return up;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#connecting = undefined;
    return client ? client.end().catch(() => {}) : Promise.resolve();
  }

  #connect(timeoutMs: number): Promise<pg.Client> {
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= (async () => {
      const client = new pg.Client({ connectionString: this.#url.reveal(), connectionTimeoutMillis: timeoutMs, application_name: 'cluster-readiness', statement_timeout: timeoutMs });
      client.on('error', () => this.#drop(client)); // the server went away: made again at the next probe
      try {
        await client.connect();
      } catch (err) {
        void client.end().catch(() => {});
        throw err;
      } finally {
        this.#connecting = undefined;
      }
      this.#client = client;
      return client;
    })();
    return this.#connecting;
  }

  /** Forgets the connection (a hung one is not waited for). */
  #drop(client = this.#client) {
    if (!client) return;
    if (this.#client === client) this.#client = undefined;
    void client.end().catch(() => {});
  }
}
