// How late this process's event loop runs: a timer every `everyMs` notes how much later than
// asked it fired; `worstMs()` is the worst of the last `windowMs`. For shedding new work
// before the process stalls (gateways/connector/admission.ts); unref'd, so it never keeps a
// process alive.
import { performance } from 'node:perf_hooks';

export class LoopLag {
  readonly #samples: number[];
  #i = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly everyMs = 100, windowMs = 2000) {
    this.#samples = new Array(Math.max(1, Math.round(windowMs / everyMs))).fill(0);
  }

  /** Starts measuring (once; later calls change nothing). */
  start(): this {
    if (this.#timer) return this;
    let last = performance.now();
    this.#timer = setInterval(() => {
      const now = performance.now();
      this.#samples[this.#i++ % this.#samples.length] = Math.max(0, now - last - this.everyMs);
      last = now;
    }, this.everyMs).unref();
    return this;
  }

  worstMs(): number {
    return Math.max(...this.#samples);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
