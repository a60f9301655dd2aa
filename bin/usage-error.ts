// A command line the `cluster` CLI cannot act on (unknown command or option, bad value).
// It exits 2 with one line, like a config error, so scripts can tell "you asked wrongly"
// from "it failed".
export class UsageError extends Error {}

/** True for our own usage errors and node's parseArgs complaints (unknown or malformed options). */
export function isUsageError(err: unknown): boolean {
  return err instanceof UsageError || (typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('ERR_PARSE_ARGS_'));
}
