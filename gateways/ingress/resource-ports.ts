// Which ports this node's TCP/UDP ingress should listen on: enabled resources' ports inside
// the operator's range (config ingress.resourcePorts, which holds none of the node's own
// ports). A port outside it is never bound, even for a resource stored before the range was
// narrowed; such a resource, and one whose port this node cannot bind, shows why in its
// status instead of stopping anything.
import type { PortRange } from '../../core/config-fields.ts';
import type { Route } from '../../protocol/route.ts';

/** Told when a resource's port could not be (or again can be) listened on here. */
export type ListenReport = (resourceId: string, problem: string | null) => void;

export function wantedPorts(routes: readonly Route[], protocol: 'tcp' | 'udp', range: PortRange, report: ListenReport): Map<number, string> {
  const want = new Map<number, string>();
  for (const r of routes) {
    if (r.protocol !== protocol || !r.enabled || !r.port) continue;
    if (r.port < range.min || r.port > range.max) report(r.resourceId, `port ${r.port} is outside ingress.resourcePorts ${range.min}-${range.max}`);
    else want.set(r.port, r.resourceId);
  }
  return want;
}
