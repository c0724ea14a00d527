/**
 * Per-instance caches of the guest door, valid for one instance generation: any change to the
 * instance (the store bumps the generation) drops them, and so does removal. Two kinds of
 * entries: render products (`value`, e.g. an EC2 tree per version) and prepared answers per path
 * (`answer`). Bounded: at most `maxInstances` instances are kept (the least recently rendered go
 * first; a hit does not reorder, to keep the hot path to two Map lookups)
 * and at most `maxAnswers` prepared answers per instance; only answers for paths that exist are
 * stored, so a guest cannot fill memory with made-up paths. Nothing with secrets or state
 * (os/parameters.json, the pipe, password, tokens) is ever cached.
 */
import type { PreparedAnswer } from './answer.js';

interface Slot {
  generation: number;
  values: Map<string, unknown>;
  answers: Map<string, PreparedAnswer>;
}

export class AnswerCache {
  private readonly slots = new Map<string, Slot>();
  constructor(
    private readonly maxInstances = 4096,
    private readonly maxAnswers = 256,
  ) {}

  private slot(instance: string, generation: number): Slot {
    let s = this.slots.get(instance);
    if (s && s.generation === generation) {
      // Move to the back: Map order is our LRU order.
      this.slots.delete(instance);
      this.slots.set(instance, s);
      return s;
    }
    s = { generation, values: new Map(), answers: new Map() };
    this.slots.delete(instance);
    this.slots.set(instance, s);
    if (this.slots.size > this.maxInstances) this.slots.delete(this.slots.keys().next().value as string);
    return s;
  }

  /** A render product for (instance, generation, key), made by `make` on a miss. */
  value<T>(instance: string, generation: number, key: string, make: () => T): T {
    const s = this.slot(instance, generation);
    if (s.values.has(key)) return s.values.get(key) as T;
    const v = make();
    s.values.set(key, v);
    return v;
  }

  /** A prepared answer for a path, or undefined. Hot path: no LRU bookkeeping on a miss. */
  answer(instance: string, generation: number, path: string): PreparedAnswer | undefined {
    const s = this.slots.get(instance);
    return s && s.generation === generation ? s.answers.get(path) : undefined;
  }

  storeAnswer(instance: string, generation: number, path: string, p: PreparedAnswer): void {
    const s = this.slot(instance, generation);
    if (s.answers.size < this.maxAnswers) s.answers.set(path, p);
  }

  drop(instance: string): void {
    this.slots.delete(instance);
  }

  get instances(): number {
    return this.slots.size;
  }
}
