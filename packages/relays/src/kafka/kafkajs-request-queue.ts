import { createRequire } from 'node:module';

/**
 * kafkajs (2.2.4, its last release) makes a negative timer delay: a connection's request queue
 * starts with `throttledUntil = -1`, and each time it has sent its last waiting request it still
 * schedules a check `throttledUntil - Date.now()` milliseconds ahead, about minus 1.8 trillion.
 * Node clamps that to 1 ms and prints `TimeoutNegativeWarning` into the application's output. It
 * happens for every producer with `maxInFlightRequests: 1`, which the idempotent producer needs.
 *
 * With nothing waiting there is nothing to check, so the scheduling is skipped then; with
 * requests waiting, kafkajs's own logic runs unchanged.
 */
interface RequestQueueLike {
  pending: unknown[];
  scheduleCheckPendingRequests(): void;
}

/** Applies the fix once; called where kafkajs is loaded (see `kafkajs()` in kafka-client.ts). */
export function quietRequestQueue(): void {
  const require = createRequire(import.meta.url);
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueueLike };
  const schedule = RequestQueue.prototype.scheduleCheckPendingRequests;
  if ((schedule as { tidingsPatched?: boolean }).tidingsPatched) return;
  const patched = function (this: RequestQueueLike): void {
    if (this.pending.length === 0) return;
    schedule.call(this);
  };
  (patched as { tidingsPatched?: boolean }).tidingsPatched = true;
  RequestQueue.prototype.scheduleCheckPendingRequests = patched;
}
