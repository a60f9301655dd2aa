// PostgreSQL through slonik. Every query result is checked by the zod schema given with
// `sql.type(...)` (the interceptor below), so a row that does not match its type is an
// error, not a silent `any`. Connection trouble becomes CLUSTER_ERR_DB_UNAVAILABLE quickly:
// bounded connect and statement timeouts, no connection retries inside a request.
import {
  createPool,
  sql,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
  BackendTerminatedError,
  ConnectionError,
  SchemaValidationError,
  StatementTimeoutError,
  UnexpectedStateError,
} from 'slonik';
import type { Clock } from '../core/clock.ts';
import { ClusterError, isClusterError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Secret } from '../core/secret.ts';
import { withDeadline } from './db-deadline.ts';
import { passThroughTransactionContext } from './slonik-context.ts';
import { fastSafeParse } from '../protocol/fast-parse.ts';

export { sql };
export type { DatabasePool };

export interface DbOptions {
  url: Secret;
  poolSize: number;
  connectTimeout: number;
  statementTimeout: number;
  /** @default statementTimeout */
  idleInTransactionTimeout?: number;
  logger: Logger;
}

/** Validates each row against the query's zod parser. */
const rowParser: Interceptor = {
  name: 'row-parser',
  transformRow(context, query, row) {
    const parser = context.resultParser;
    if (!parser) return row;
    const result = fastSafeParse(parser, row); // a row already what the schema returns is taken as it is (protocol/fast-parse.ts)
    if (!result.success) throw new SchemaValidationError(query, row, result.error.issues);
    return result.data as QueryResultRow;
  },
};

/**
 * Creates the pool. slonik's pg driver connects once here to load type parsers, so this
 * needs PostgreSQL reachable and throws CLUSTER_ERR_DB_UNAVAILABLE otherwise; once created,
 * the pool survives PostgreSQL restarts (broken connections are replaced). Every query and
 * transaction has a client-side deadline (db-deadline.ts), so a hung server cannot hold one.
 */
export async function createDb(opts: DbOptions): Promise<DatabasePool> {
  passThroughTransactionContext();
  const pool = await withDb(() => createPool(opts.url.reveal(), {
    maximumPoolSize: opts.poolSize,
    connectionTimeout: opts.connectTimeout,
    statementTimeout: opts.statementTimeout,
    idleInTransactionSessionTimeout: opts.idleInTransactionTimeout ?? opts.statementTimeout,
    idleTimeout: 30_000,
    connectionRetryLimit: 0,
    queryRetryLimit: 0,
    transactionRetryLimit: 0,
    interceptors: [rowParser],
    // slonik sends DISCARD ALL each time a connection goes back to the pool: a statement and a
    // round trip per query or transaction (a quarter of a reconnect storm's statements). Nothing
    // here leaves session state behind (no SET, advisory locks transaction-scoped, no temporary
    // tables, LISTEN or named prepared statements), so there is nothing to discard.
    resetConnection: async () => {},
  }));
  // A statement may take statementTimeout; a connection connectTimeout to set up first.
  return withDeadline(pool, opts.statementTimeout + opts.connectTimeout);
}

const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE', '57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004']);

function isUnavailable(err: unknown): boolean {
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (e instanceof ConnectionError || e instanceof BackendTerminatedError) return true;
    if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
    if (e instanceof UnexpectedStateError && /connect|terminat/i.test(e.message)) return true;
    if (/Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED/i.test(String(e.message))) return true;
  }
  return false;
}

/** Maps driver errors to coded ones; other errors (constraint violations...) pass through. */
export function toDbError(err: unknown): unknown {
  if (err instanceof ClusterError) return err;
  if (isUnavailable(err)) return new ClusterError('CLUSTER_ERR_DB_UNAVAILABLE', `postgresql unavailable: ${(err as Error).message}`, {}, { cause: err });
  if (err instanceof StatementTimeoutError) return new ClusterError('CLUSTER_ERR_DB_QUERY_FAILED', 'postgresql statement timed out', {}, { cause: err });
  return err;
}

/** Runs a database operation with coded errors. */
export async function withDb<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw toDbError(err);
  }
}

/**
 * Runs `step` until PostgreSQL is reachable: CLUSTER_ERR_DB_UNAVAILABLE is retried with
 * backoff (capped at 5 s) while `keepTrying()`; other errors end it. Undefined when it stopped trying.
 */
export async function whileUnreachable<T>(o: { clock: Clock; logger: Logger; keepTrying: () => boolean }, step: () => Promise<T>): Promise<T | undefined> {
  for (let attempt = 0; o.keepTrying(); attempt++) {
    try {
      return await step();
    } catch (err) {
      if (!isClusterError(err, 'CLUSTER_ERR_DB_UNAVAILABLE')) throw err;
      const delay = Math.min(5000, 200 * 2 ** Math.min(attempt, 5));
      o.logger.warn({ code: err.code, retryInMs: delay }, 'postgres unreachable; start-up waits');
      await o.clock.sleep(delay);
    }
  }
  return undefined;
}
