import type { Database } from '@tidings/outbox';
import { FeedHub, type HubSettings } from './feed-hub.ts';

interface Entry {
  readonly hub: FeedHub;
  readonly holders: Set<HubSettings>;
}

const registry = new WeakMap<Database, Map<string, Entry>>();

/** A feed's hold on the hub of its database and schema. */
export interface HubLease {
  readonly hub: FeedHub;
  /** Lets go; the last holder's release stops the hub's LISTEN. */
  release(): Promise<void>;
}

/**
 * The hub shared by every feed of this process on the same `Database` handle and schema, so they
 * all ride on one LISTEN connection and one tail read. Settings come from the first feed; later
 * feeds only lower the poll interval.
 */
export function acquireHub(database: Database, settings: HubSettings): HubLease {
  let bySchema = registry.get(database);
  if (bySchema === undefined) {
    bySchema = new Map();
    registry.set(database, bySchema);
  }
  let entry = bySchema.get(settings.schema);
  if (entry === undefined) {
    entry = { hub: new FeedHub(database, settings), holders: new Set() };
    bySchema.set(settings.schema, entry);
  } else {
    entry.hub.lowerPollInterval(settings.pollIntervalMs);
  }
  const held = entry;
  const mine = { ...settings };
  held.holders.add(mine);
  let released: Promise<void> | undefined;
  return {
    hub: held.hub,
    release() {
      released ??= (async () => {
        held.holders.delete(mine);
        if (held.holders.size > 0) return;
        if (bySchema.get(settings.schema) === held) bySchema.delete(settings.schema);
        await held.hub.close(new Error('the feed was closed'));
      })();
      return released;
    },
  };
}
