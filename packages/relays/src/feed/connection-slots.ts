import type { ServerResponse } from 'node:http';
import { responseGone } from './http-types.ts';
import { TooManyConnectionsError } from './errors.ts';

/** How many long-lived requests a feed serves at once. */
export interface SlotLimits {
  readonly total: number;
  readonly perTenant: number;
  /** Sent as `Retry-After` with a refusal. */
  readonly retryAfterSeconds: number;
}

/**
 * Counts a feed's long-lived requests (SSE streams, long polls), in total and per tenant, and
 * refuses one beyond either limit. Each slot taken must be released once, when its request ends
 * however it ends (finished, failed, or the client gone).
 */
export class ConnectionSlots {
  readonly #limits: SlotLimits;
  readonly #what: string;
  readonly #byTenant = new Map<string | undefined, number>();
  #total = 0;

  /** `what` names the requests in refusals, e.g. `SSE connections`. */
  constructor(limits: SlotLimits, what: string) {
    this.#limits = limits;
    this.#what = what;
  }

  /** Requests holding a slot now. */
  get size(): number {
    return this.#total;
  }

  /**
   * Takes a slot for a request of `tenant` (undefined: a caller that reads every tenant), or
   * throws `TooManyConnectionsError`. Returns the release, which does something only the first time.
   */
  take(tenant: string | undefined): () => void {
    const { total, perTenant, retryAfterSeconds } = this.#limits;
    const mine = this.#byTenant.get(tenant) ?? 0;
    if (mine >= perTenant) throw new TooManyConnectionsError('tenant', perTenant, tenant, this.#what, retryAfterSeconds);
    if (this.#total >= total) throw new TooManyConnectionsError('total', total, tenant, this.#what, retryAfterSeconds);
    this.#byTenant.set(tenant, mine + 1);
    this.#total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      const left = (this.#byTenant.get(tenant) ?? 1) - 1;
      if (left === 0) this.#byTenant.delete(tenant);
      else this.#byTenant.set(tenant, left);
    };
  }

  /**
   * Takes a slot (see `take`) held until `response` closes: finished, refused, or the client gone
   * (at once if it is gone already).
   */
  holdFor(response: ServerResponse, tenant: string | undefined): void {
    const release = this.take(tenant);
    if (responseGone(response)) release();
    else response.once('close', release);
  }
}
