// slonik marks each transaction with an AsyncLocalStorage, only to throw
// UnexpectedForeignConnectionError when code inside a transaction's handler queries through
// another connection. On Node 20 the first `run` of any AsyncLocalStorage turns async hooks
// on for the whole process, for good: from then every promise, socket write, timer and
// nextTick calls them. The data plane shares the process with the database client, and
// those calls were about a tenth of the tunnel node's CPU per proxied request (bench:tunnel,
// README "Measured tunnel performance"). The context is made a pass-through: transactions
// run exactly as before; that one programming-error check is what is given up.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

interface ContextLike {
  run<R>(store: unknown, fn: (...args: unknown[]) => R, ...args: unknown[]): R;
  getStore(): unknown;
}

let done = false;

/** Replaces slonik's transaction context with one that keeps no store (idempotent). */
export function passThroughTransactionContext(): void {
  if (done) return;
  done = true;
  const require = createRequire(import.meta.url);
  // Not in slonik's public API: found next to its entry point; a layout change fails loudly here.
  const file = join(dirname(require.resolve('slonik')), 'contexts', 'transactionContext.js');
  const context = (require(file) as { transactionContext?: ContextLike }).transactionContext;
  if (!context || typeof context.run !== 'function') throw new Error(`slonik's transaction context is not where it was (${file})`);
  context.run = (_store, fn, ...args) => fn(...args);
  context.getStore = () => undefined;
}
