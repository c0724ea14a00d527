/**
 * Pre-rendered guest answers, per instance, keyed by what was rendered. An entry is valid for one
 * instance generation: any change to the instance (the store bumps the generation) drops it, and
 * removal drops the instance. Only successful answers for paths that exist are cached, so a
 * guest cannot fill the cache with made-up paths. Never caches anything with secrets or state
 * (os/parameters.json, the pipe, password, tokens).
 */
export class AnswerCache {
  private readonly byInstance = new Map<string, { generation: number; entries: Map<string, unknown> }>();
  hits = 0;
  misses = 0;

  /** The value for (instance, generation, key), computed by `make` on a miss. */
  get<T>(instance: string, generation: number, key: string, make: () => T): T {
    let slot = this.byInstance.get(instance);
    if (!slot || slot.generation !== generation) {
      slot = { generation, entries: new Map() };
      this.byInstance.set(instance, slot);
    }
    if (slot.entries.has(key)) {
      this.hits++;
      return slot.entries.get(key) as T;
    }
    this.misses++;
    const v = make();
    slot.entries.set(key, v);
    return v;
  }

  drop(instance: string): void {
    this.byInstance.delete(instance);
  }
}
