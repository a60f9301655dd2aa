// What this node sees happen in the cluster, for the dashboard's live view: members joining,
// dying (by lease or a refused peer port) and leaving, and actors claimed and released (the
// ownership channel every node hears). One subscription per node, fanned out to each viewer.
import { EventEmitter } from 'node:events';
import type { Clock } from '../core/clock.ts';
import type { ClusterEvent } from '../gateways/admin/http.ts';
import type { Valkey } from '../persistence/valkey.ts';
import type { Membership, MembershipEvent } from './membership.ts';

export class ClusterEvents {
  readonly #emitter = new EventEmitter();
  #off: Array<() => unknown> = [];

  constructor() {
    // Each open dashboard is a listener; no warning at the default of ten.
    this.#emitter.setMaxListeners(0);
  }

  async attach(d: { membership: Membership; valkey: Valkey; clock: Clock }): Promise<void> {
    const onChange = (m: MembershipEvent) => {
      this.#emit({ type: 'member', change: m.type, node: m.member.id, incarnation: m.member.incarnation, ...(m.type === 'dead' ? { reason: m.reason } : {}), at: d.clock.now() });
    };
    d.membership.on('change', onChange);
    this.#off.push(() => d.membership.off('change', onChange));
    const unsubscribe = await d.valkey.subscribe('ownership', (o) => this.#emit({ type: 'ownership', change: o.type, kind: o.kind, ids: o.ids, node: o.node, at: d.clock.now() }));
    this.#off.push(unsubscribe);
  }

  #emit(e: ClusterEvent) {
    this.#emitter.emit('event', e);
  }

  subscribe(listener: (e: ClusterEvent) => void): () => void {
    this.#emitter.on('event', listener);
    return () => this.#emitter.off('event', listener);
  }

  stop() {
    for (const off of this.#off) off();
    this.#off = [];
  }
}
