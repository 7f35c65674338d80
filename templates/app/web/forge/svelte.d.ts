// Types of the Svelte stores (svelte.js), written by `forge generate ts`. Do not edit.

import type { ForgeClient, ForgeError, FunctionRef, JobState } from './client.js';

/** Svelte's readable store contract. */
export interface Readable<T> {
  subscribe(run: (value: T) => void): () => void;
}

/** A live query's state: `loading` until the first result. */
export interface LiveQuery<R> {
  data: R | undefined;
  error: ForgeError | undefined;
  loading: boolean;
}

/** A watched job's state: `loading` until the first message. */
export interface LiveJob {
  job: JobState | undefined;
  error: ForgeError | undefined;
  loading: boolean;
}

/** A readable store of `query(args)`'s result, live while the store has a subscriber. */
export declare function liveQuery<A, R>(query: FunctionRef<'query', A, R>, args: A): Readable<LiveQuery<R>>;

/** A readable store of job `id`'s state and progress, live while the store has a subscriber. */
export declare function liveJob(client: ForgeClient, id: number): Readable<LiveJob>;
