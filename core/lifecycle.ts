// Explicit lifecycle states for every long-lived component (STYLE: starting | running |
// draining | stopped | failed). Transitions are checked so a component cannot, say, go
// from stopped back to running without a new instance.
export type LifecycleState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

const ALLOWED: Record<LifecycleState, LifecycleState[]> = {
  starting: ['running', 'draining', 'stopped', 'failed'],
  running: ['draining', 'stopped', 'failed'],
  draining: ['stopped', 'failed'],
  stopped: [],
  failed: ['stopped'],
};

export class Lifecycle {
  #state: LifecycleState = 'starting';
  readonly #listeners = new Set<(to: LifecycleState, from: LifecycleState) => void>();

  get state(): LifecycleState {
    return this.#state;
  }

  /** Moves to `to`; returns false (and stays) when the transition is not allowed. */
  to(to: LifecycleState): boolean {
    const from = this.#state;
    if (from === to || !ALLOWED[from].includes(to)) return false;
    this.#state = to;
    for (const fn of this.#listeners) fn(to, from);
    return true;
  }

  onChange(fn: (to: LifecycleState, from: LifecycleState) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
}
