// A simulated clock for tests where timing is the subject: time moves only when the test
// advances it (or, with `sleepAdvances`, when code under test sleeps), and timers fire in
// order as it passes them.
import type { Clock } from '../../core/clock.ts';

interface Timer {
  at: number;
  every: number | undefined;
  fn: () => void;
  cancelled: boolean;
}

export class SimulatedClock implements Clock {
  t: number;
  readonly #timers: Timer[] = [];
  readonly #sleepAdvances: boolean;

  /** `sleepAdvances`: a sleep moves time forward by itself (code that only sleeps needs no driver). */
  constructor(opts: { start?: number; sleepAdvances?: boolean } = {}) {
    this.t = opts.start ?? 0;
    this.#sleepAdvances = opts.sleepAdvances ?? true;
  }

  now(): number {
    return this.t;
  }

  #add(fn: () => void, ms: number, every: number | undefined) {
    const timer: Timer = { at: this.t + Math.max(0, ms), every, fn, cancelled: false };
    this.#timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }

  setTimeout(fn: () => void, ms: number) {
    return this.#add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number) {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  async sleep(ms: number): Promise<void> {
    if (this.#sleepAdvances) return void this.advance(ms);
    await new Promise<void>((resolve) => this.#add(resolve, ms, undefined));
  }

  /** Moves time forward, firing every timer due on the way, in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.#timers.filter((x) => !x.cancelled && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = Math.max(this.t, due.at);
      if (due.every) due.at += due.every;
      else due.cancelled = true;
      due.fn();
    }
    this.t = end;
    for (let i = this.#timers.length - 1; i >= 0; i--) if (this.#timers[i]!.cancelled) this.#timers.splice(i, 1);
  }

  /** Timers still waiting (a test can check that nothing leaked). */
  get pending(): number {
    return this.#timers.filter((x) => !x.cancelled).length;
  }
}
