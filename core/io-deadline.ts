// A deadline for an answer over a socket that a stall of this process cannot fake. Node runs
// expired timers before it reads its sockets, so when the event loop was held up (a long GC, a
// starved CPU) every deadline fires at once while the answers sit unread. This one, when its
// timer fires, waits for the check phase of that turn (setImmediate runs after the sockets were
// read): only an answer still missing then has missed the deadline.

export interface IoDeadline {
  /** Resolves when the deadline has passed with the answer still missing. */
  readonly expired: Promise<void>;
  cancel(): void;
}

export function ioDeadline(ms: number): IoDeadline {
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const expired = new Promise<void>((resolve) => {
    timer = setTimeout(() => (immediate = setImmediate(resolve)), ms);
  });
  return {
    expired,
    cancel() {
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
    },
  };
}

/**
 * `work` over a connection whose answers come in order, or a rejection with `error()` once it
 * has gone `ms` without its answer *and* without hearing anything on that connection
 * (`heardAt`, ms epoch): while earlier answers keep arriving this one is queued behind them,
 * not lost. A node busy with thousands of commands in flight (a reconnect storm) reads its
 * replies slower than they come; with a plain deadline the last of them timed out while Valkey
 * had long answered, and each timeout crashed an actor that then did its work again.
 * `capMs` bounds the whole wait, so a backlog that never drains still fails.
 */
export function withProgressDeadline<T>(work: Promise<T>, ms: number, heardAt: () => number, capMs: number, error: () => Error): Promise<T> {
  const start = Date.now();
  let current: IoDeadline | undefined;
  const late = new Promise<never>((_, reject) => {
    const arm = (wait: number) => {
      current = ioDeadline(wait);
      void current.expired.then(() => {
        const now = Date.now();
        const quietFor = now - Math.max(heardAt(), start);
        const left = Math.min(ms - quietFor, start + capMs - now);
        if (left > 0) arm(left);
        else reject(error());
      });
    };
    arm(ms);
  });
  return Promise.race([work, late]).finally(() => current?.cancel());
}
