import type { Database } from '@tidings/outbox';

/**
 * A `Database` whose `listen()` shares one LISTEN per channel among all subscribers, so a
 * dispatcher running a relay per endpoint holds one listening connection, not one per endpoint.
 * Everything else goes to `database` unchanged.
 */
export function sharedListener(database: Database): Database {
  const channels = new Map<string, { subscribers: Set<(payload: string) => void>; ready: Promise<() => Promise<void>> }>();

  async function listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    let entry = channels.get(channel);
    if (!entry) {
      const subscribers = new Set<(payload: string) => void>();
      const ready = database.listen(channel, (payload) => {
        for (const subscriber of subscribers) subscriber(payload);
      });
      entry = { subscribers, ready };
      channels.set(channel, entry);
      ready.catch(() => channels.delete(channel));
    }
    const current = entry;
    current.subscribers.add(onNotify);
    try {
      await current.ready;
    } catch (error) {
      current.subscribers.delete(onNotify);
      throw error;
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      current.subscribers.delete(onNotify);
      if (current.subscribers.size > 0 || channels.get(channel) !== current) return;
      channels.delete(channel);
      await (await current.ready)();
    };
  }

  return {
    query: (text, params) => database.query(text, params),
    transaction: (fn) => database.transaction(fn),
    listen,
  };
}
