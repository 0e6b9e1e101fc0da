/**
 * Max-heap of symbol pairs ordered by count, ties broken towards the smaller pair (a, then b),
 * the same order as the Rust `tokenizers` BpeTrainer so equal-count merges come out in a fixed,
 * data-independent order.
 *
 * Entries are not updated in place: the trainer pushes a pair when it appears and, when an entry
 * pops with a stale count, pushes it again with the current one (lazy deletion). Storage is three
 * parallel number arrays to keep the hot loop free of per-entry objects.
 */
export class PairHeap {
  private readonly count: number[] = [];
  private readonly a: number[] = [];
  private readonly b: number[] = [];

  get size(): number {
    return this.count.length;
  }

  push(count: number, a: number, b: number): void {
    this.count.push(count);
    this.a.push(a);
    this.b.push(b);
    this.siftUp(this.count.length - 1);
  }

  /** Removes the top entry and returns it, or undefined when empty. */
  pop(): { count: number; a: number; b: number } | undefined {
    const n = this.count.length;
    if (n === 0) return undefined;
    const top = { count: this.count[0], a: this.a[0], b: this.b[0] };
    const lastCount = this.count.pop() as number;
    const lastA = this.a.pop() as number;
    const lastB = this.b.pop() as number;
    if (n > 1) {
      this.count[0] = lastCount;
      this.a[0] = lastA;
      this.b[0] = lastB;
      this.siftDown(0);
    }
    return top;
  }

  /** True when entry i should sit above entry j. */
  private above(i: number, j: number): boolean {
    const ci = this.count[i];
    const cj = this.count[j];
    if (ci !== cj) return ci > cj;
    const ai = this.a[i];
    const aj = this.a[j];
    if (ai !== aj) return ai < aj;
    return this.b[i] < this.b[j];
  }

  private swap(i: number, j: number): void {
    const c = this.count[i];
    this.count[i] = this.count[j];
    this.count[j] = c;
    const a = this.a[i];
    this.a[i] = this.a[j];
    this.a[j] = a;
    const b = this.b[i];
    this.b[i] = this.b[j];
    this.b[j] = b;
  }

  private siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const n = this.count.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) return;
      const right = left + 1;
      const best = right < n && this.above(right, left) ? right : left;
      if (!this.above(best, i)) return;
      this.swap(i, best);
      i = best;
    }
  }
}
