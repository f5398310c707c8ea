import type { ReceivedMessage, Subscription } from './harness.ts';

/** A {@link Subscription} that a harness feeds by hand. */
export interface CollectingSubscription extends Subscription {
  /** Records a message that arrived, in arrival order, and wakes the waiters it satisfies. */
  push(message: ReceivedMessage): void;
  readonly closed: boolean;
}

interface Waiter {
  readonly count: number;
  readonly resolve: (messages: readonly ReceivedMessage[]) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The bookkeeping half of a harness subscription: keeps what arrived and implements `waitFor`, so
 * that a harness only decodes broker messages and calls `push`. `onClose` stops the consumer.
 *
 * @example
 * async subscribe(topic) {
 *   const consumer = await startConsumer(topic);
 *   const subscription = collectingSubscription(topic, () => consumer.stop());
 *   consumer.on('message', (m) => subscription.push(decode(m)));
 *   return subscription;
 * }
 */
export function collectingSubscription(
  topic: string,
  onClose: () => Promise<void> | void = () => {},
  defaultTimeoutMs = 30_000,
): CollectingSubscription {
  const received: ReceivedMessage[] = [];
  const waiters = new Set<Waiter>();
  let closing: Promise<void> | undefined;

  return {
    received,
    get closed() {
      return closing !== undefined;
    },
    push(message) {
      if (closing) return;
      received.push(message);
      for (const waiter of waiters) {
        if (received.length >= waiter.count) {
          waiters.delete(waiter);
          clearTimeout(waiter.timer);
          waiter.resolve(received);
        }
      }
    },
    waitFor(count, timeoutMs = defaultTimeoutMs) {
      if (received.length >= count) return Promise.resolve(received);
      if (closing) return Promise.reject(new Error(`the subscription to "${topic}" is closed; ${received.length} of ${count} messages arrived`));
      return new Promise((resolve, reject) => {
        const waiter: Waiter = {
          count,
          resolve,
          reject,
          timer: setTimeout(() => {
            waiters.delete(waiter);
            reject(new Error(`only ${received.length} of ${count} messages arrived on "${topic}" within ${timeoutMs} ms`));
          }, timeoutMs),
        };
        waiters.add(waiter);
      });
    },
    close() {
      closing ??= (async () => {
        for (const waiter of waiters) {
          clearTimeout(waiter.timer);
          waiter.reject(new Error(`the subscription to "${topic}" was closed; ${received.length} of ${waiter.count} messages had arrived`));
        }
        waiters.clear();
        await onClose();
      })();
      return closing;
    },
  };
}
