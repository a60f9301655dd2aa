// Readiness of one node: periodic probes of PostgreSQL and Valkey plus the node's own
// lifecycle. Probes run on an interval (never per request), so a load balancer polling
// /readyz adds no load, and an answer is always immediate.
import type { Clock } from '../core/clock.ts';
import type { LifecycleState } from '../core/lifecycle.ts';
import type { Logger } from '../core/log.ts';

export interface ReadinessReport {
  ready: boolean;
  /** Which node and process answered: a launcher or an operator can tell it from a stray server on the address. */
  node: string;
  pid: number;
  state: LifecycleState;
  checks: { postgres: 'up' | 'down'; valkey: 'up' | 'down'; migrations: 'done' | 'pending'; lease: 'held' | 'none' };
}

export interface ReadinessDeps {
  nodeId: string;
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  timeoutMs: number;
  state: () => LifecycleState;
  pingPostgres: (timeoutMs: number) => Promise<boolean>;
  pingValkey: (timeoutMs: number) => Promise<boolean>;
  /** Whether this node holds its membership lease (false before joining and while fenced). */
  leaseHealthy: () => boolean;
}

export class Readiness {
  readonly #deps: ReadinessDeps;
  readonly #log: Logger;
  #postgres = false;
  #valkey = false;
  #migrated = false;
  #timer: { cancel(): void } | undefined;
  #probing = false;

  constructor(deps: ReadinessDeps) {
    this.#deps = deps;
    this.#log = deps.logger.child({ component: 'readiness' });
  }

  markMigrated() {
    this.#migrated = true;
  }

  report(): ReadinessReport {
    const state = this.#deps.state();
    const checks = {
      postgres: this.#postgres ? 'up' : 'down',
      valkey: this.#valkey ? 'up' : 'down',
      migrations: this.#migrated ? 'done' : 'pending',
      lease: this.#deps.leaseHealthy() ? 'held' : 'none',
    } as const;
    const ready = state === 'running' && this.#postgres && this.#valkey && this.#migrated && checks.lease === 'held';
    return { ready, node: this.#deps.nodeId, pid: process.pid, state, checks };
  }

  get postgresUp(): boolean {
    return this.#postgres;
  }

  get valkeyUp(): boolean {
    return this.#valkey;
  }

  start() {
    void this.probe();
    this.#timer = this.#deps.clock.setInterval(() => void this.probe(), this.#deps.intervalMs);
  }

  stop() {
    this.#timer?.cancel();
  }

  /** One probe round; overlapping rounds are skipped (a hung probe must not pile up). */
  async probe(): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    try {
      const [pgUp, vkUp] = await Promise.all([this.#deps.pingPostgres(this.#deps.timeoutMs), this.#deps.pingValkey(this.#deps.timeoutMs)]);
      if (pgUp !== this.#postgres) this.#log[pgUp ? 'info' : 'warn']({ dependency: 'postgres' }, pgUp ? 'dependency up' : 'dependency down');
      if (vkUp !== this.#valkey) this.#log[vkUp ? 'info' : 'warn']({ dependency: 'valkey' }, vkUp ? 'dependency up' : 'dependency down');
      this.#postgres = pgUp;
      this.#valkey = vkUp;
    } finally {
      this.#probing = false;
    }
  }
}
