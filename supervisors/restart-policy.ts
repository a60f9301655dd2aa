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

  constructor(opts: Partial<RestartPolicyOptions> = {}, random: () => number = Math.random) {
    this.#opts = { ...DEFAULT_RESTART_POLICY, ...opts };
    this.#random = random;
  }

  /** Records a crash at `now` and decides what to do. */
  onFailure(now: number): RestartDecision {
    this.#failures = this.#failures.filter((t) => now - t < this.#opts.windowMs);
    this.#failures.push(now);
    const attempt = this.#failures.length;
    if (attempt > this.#opts.maxRestarts) return { action: 'escalate', failures: attempt };
    const base = Math.min(this.#opts.backoffMaxMs, this.#opts.backoffMinMs * 2 ** (attempt - 1));
    const spread = base * this.#opts.jitter;
    const delayMs = Math.max(0, Math.round(base - spread + this.#random() * 2 * spread));
    return { action: 'restart', delayMs, attempt };
  }
}
