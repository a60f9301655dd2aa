// The rule shared by the checks that exist only as a floor under lost news (a route naming a
// gone node, an orphaned route read again): they wait while sites move (supervisors/site-news.ts),
// since in a reconnect storm the moves' own announcements do their work.

/**
 * How much longer a check that is due now waits (0: run it now): until no site has moved for
 * `quietMs`, and never past `latestAt` (ms on the same clock as `now`).
 */
export function quietWait(quietForMs: number, quietMs: number, now: number, latestAt: number): number {
  return Math.max(0, Math.min(quietMs - quietForMs, latestAt - now));
}
