/**
 * FNV-1a (32 bit) over the UTF-8 bytes of the ordering key. It is computed in the application so
 * that a key's partition never depends on the database server's version or its internal hash.
 */
export function keyHash(key: string): number {
  let hash = 0x811c9dc5;
  const bytes = Buffer.from(key, 'utf8');
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** The partition an event lands in: by its key, or by its id when it has none. */
export function partitionOf(key: string | null, eventId: string, partitions: number): number {
  return keyHash(key ?? eventId) % partitions;
}
