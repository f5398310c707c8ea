import * as real from '../../src/relay/tail-route.ts';

export * from '../../src/relay/tail-route.ts';

/**
 * Mutant `tail-only`: a runner behind what the shared tail holds is answered from the tail anyway,
 * so it skips the events between its cursor and the tail's start.
 */
export const tailRoute: typeof real.tailRoute = (after, tail) => {
  const route = real.tailRoute(after, tail);
  return route === 'own' ? 'tail' : route;
};
