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

/** `work`, or a rejection with `error()` once the deadline passed without its answer. */
export async function withIoDeadline<T>(work: Promise<T>, ms: number, error: () => Error): Promise<T> {
  const d = ioDeadline(ms);
  try {
    return await Promise.race([work, d.expired.then(() => Promise.reject(error()))]);
  } finally {
    d.cancel();
  }
}
