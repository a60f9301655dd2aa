// Which node addresses this node's DNS leaves out of its answers, decided from its own view
// (routing only: nothing here moves an actor). Pure, so each rule is tested on its own.
import type { MemberRecord } from '../protocol/channels.ts';

export interface ExclusionView {
  self: string;
  /** The members traffic uses (Membership.forTraffic): while fenced, those live when it happened. */
  members: MemberRecord[];
  /** Peers this node suspects (silent, and no other peer heard them). */
  suspected: ReadonlySet<string>;
  /** Whether this node holds its lease (false while fenced or rejoining). */
  healthy: boolean;
  /** Whether Valkey shows the peer still renewing its lease. */
  renewing: (id: string) => boolean;
}

/** The addresses to leave out, and those to answer with when a name would be left with none. */
export function dnsExclusions(v: ExclusionView): { excluded: Set<string>; answering: string[] } {
  const out = new Set(v.suspected);
  const peers = v.members.filter((m) => m.id !== v.self);
  // Suspecting every peer (two or more) while Valkey shows them renewing their leases: this
  // node is the one cut off, and clients may well reach them; keep naming those still
  // renewing (a peer that really froze stops renewing within two intervals, left out then).
  if (peers.length >= 2 && peers.every((m) => out.has(m.id))) for (const m of peers) if (v.renewing(m.id)) out.delete(m.id);
  // Fenced: its sites and zones moved on without it; the others answer for them.
  if (!v.healthy) out.add(v.self);
  return {
    excluded: new Set(v.members.filter((m) => out.has(m.id)).flatMap((m) => m.addresses ?? [])),
    answering: v.members.filter((m) => !out.has(m.id)).flatMap((m) => m.addresses ?? []),
  };
}
