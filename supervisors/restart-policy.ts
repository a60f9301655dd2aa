// Restart policy for crashing actors: a budget of restarts within a sliding window, with
// exponential backoff and jitter between restarts; past the budget, escalate. Pure logic
// (time comes in as `now`), so tests drive it without waiting.
import { SPEC } from '../cluster.config.ts';

export interface RestartPolicyOptions {
  /** Restarts allowed within `windowMs` before escalating (config `supervision.maxRestarts`). */
  maxRestarts: number;
  /** Config `supervision.window`. */
  windowMs: number;
  /** First backoff (config `supervision.backoffMin`). */
  backoffMinMs: number;
  /** Backoff cap (config `supervision.backoffMax`). */
  backoffMaxMs: number;
  /** Fraction of the delay randomised (0..1). @default 0.2 */
  jitter: number;
}

const defaultOf = <T>(field: { default?: unknown; parse(raw: unknown): T }): T => field.parse(field.default);

/** The configuration's defaults (SPEC is their one home), for actor systems built without a config. */
export const DEFAULT_RESTART_POLICY: RestartPolicyOptions = {
  maxRestarts: defaultOf(SPEC.supervision.maxRestarts),
  windowMs: defaultOf(SPEC.supervision.window),
  backoffMinMs: defaultOf(SPEC.supervision.backoffMin),
  backoffMaxMs: defaultOf(SPEC.supervision.backoffMax),
  jitter: 0.2,
};

export type RestartDecision = { action: 'restart'; delayMs: number; attempt: number } | { action: 'escalate'; failures: number };

export class RestartBudget {
  readonly #opts: RestartPolicyOptions;
  readonly #random: () => number;
  #failures: number[] = [];
  /** Failures while a dependency was away, within the window: they set the backoff only. */
  #outages: number[] = [];

  constructor(opts: Partial<RestartPolicyOptions> = {}, random: () => number = Math.random) {
    this.#opts = { ...DEFAULT_RESTART_POLICY, ...opts };
    this.#random = random;
  }

  /**
   * Records a crash at `now` and decides what to do. A crash because PostgreSQL or Valkey is
   * unreachable (`dependencyDown`) backs off like any other but never escalates: the actor is
   * not at fault, and giving it up would keep it down for a whole window after the dependency
   * came back (seen: a dns-zone actor down 31 s after back-to-back Valkey failovers).
   */
  onFailure(now: number, dependencyDown = false): RestartDecision {
    const recent = (xs: number[]) => [...xs.filter((t) => now - t < this.#opts.windowMs), now];
    if (dependencyDown) this.#outages = recent(this.#outages);
    else this.#failures = recent(this.#failures);
    const attempt = (dependencyDown ? this.#outages : this.#failures).length;
    if (!dependencyDown && attempt > this.#opts.maxRestarts) return { action: 'escalate', failures: attempt };
    const base = Math.min(this.#opts.backoffMaxMs, this.#opts.backoffMinMs * 2 ** (attempt - 1));
    const spread = base * this.#opts.jitter;
    const delayMs = Math.max(0, Math.round(base - spread + this.#random() * 2 * spread));
    return { action: 'restart', delayMs, attempt };
  }
}
