/**
 * The comm-address index: which instance holds each comm IPv4, MAC and tap name, and which
 * writes in flight have claimed one. Two instances never share any of the three; a write claims
 * its addresses synchronously before its first await, so two parallel registrations cannot both
 * pass the check. Memory only, no I/O; daemon/registry/store.ts decides when to add, claim and remove.
 */
import type { PublicDoc } from './model.js';

type Comm = PublicDoc['comm'];
type Kind = 'ipv4' | 'mac' | 'tap';
/** In the order conflicts are reported. */
const KINDS: readonly Kind[] = ['ipv4', 'mac', 'tap'];

/** Where a document collides: a JSON pointer into it and the rule. */
export interface CommProblem {
  path: string;
  message: string;
}

const newMaps = (): Record<Kind, Map<string, string>> => ({ ipv4: new Map(), mac: new Map(), tap: new Map() });

export class CommIndex {
  /** Address -> name of the stored instance that holds it. */
  private readonly held = newMaps();
  /** Address -> name of the instance whose write in flight claimed it. */
  private readonly pending = newMaps();

  /** The name of the instance whose comm IPv4 is `ip` (guest identification). */
  nameAt(ip: string): string | undefined {
    return this.held.ipv4.get(ip);
  }

  /** The name of the instance whose comm tap is `tap` (IPv6 link-local guests: fe80::…%TAP). */
  nameOfTap(tap: string): string | undefined {
    return this.held.tap.get(tap);
  }

  /**
   * The first comm address of `doc` that another instance holds or has claimed, or undefined.
   * The same instance re-using its own addresses is no problem, nor is what `ignoring` holds.
   */
  problem(doc: PublicDoc, ignoring?: string): CommProblem | undefined {
    for (const kind of KINDS) {
      const value = doc.comm[kind];
      if (value === undefined) continue;
      for (const owner of [this.held[kind].get(value), this.pending[kind].get(value)]) {
        // The holder is named: the admin door is for admins, and "which one?" is their next question.
        if (owner !== undefined && owner !== doc.name && owner !== ignoring)
          return { path: `/comm/${kind}`, message: `already used by instance ${owner}` };
      }
    }
    return undefined;
  }

  /** Reserve `doc`'s comm addresses for a write in flight; call the result when it settles. */
  claim(doc: PublicDoc): () => void {
    const values = present(doc.comm);
    for (const [kind, value] of values) this.pending[kind].set(value, doc.name);
    return () => {
      for (const [kind, value] of values) this.pending[kind].delete(value);
    };
  }

  /** `doc` is stored: its addresses are held by it. */
  add(doc: PublicDoc): void {
    for (const [kind, value] of present(doc.comm)) this.held[kind].set(value, doc.name);
  }

  /** `doc` is no longer stored: release what it still holds (a successor may hold some already). */
  remove(doc: PublicDoc): void {
    for (const [kind, value] of present(doc.comm)) {
      if (this.held[kind].get(value) === doc.name) this.held[kind].delete(value);
    }
  }
}

function present(comm: Comm): [Kind, string][] {
  return KINDS.flatMap((kind): [Kind, string][] => {
    const value = comm[kind];
    return value === undefined ? [] : [[kind, value]];
  });
}
