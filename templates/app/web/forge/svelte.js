// Svelte stores over Forge's client, written by `forge generate ts`: `$notes` in a component
// (Svelte 4 or 5) follows a live query. They implement Svelte's store contract themselves, so
// they import nothing from Svelte. Do not edit: `forge generate ts` writes it again.

function store(start, initial) {
  let value = initial;
  const runs = new Set();
  let stop = null;
  const set = (next) => {
    value = next;
    for (const run of runs) run(value);
  };
  return {
    subscribe(run) {
      runs.add(run);
      if (runs.size === 1) stop = start(set, () => value);
      run(value);
      return () => {
        runs.delete(run);
        if (runs.size === 0 && stop) {
          stop();
          stop = null;
        }
      };
    },
  };
}

/** A readable store of `query(args)`'s result, live while the store has a subscriber. */
export function liveQuery(query, args) {
  return store(
    (set, get) =>
      query.client.subscribe(
        query,
        args,
        (data) => set({ data, error: undefined, loading: false }),
        (error) => set({ data: get().data, error, loading: false }),
      ),
    { data: undefined, error: undefined, loading: true },
  );
}

/** A readable store of job `id`'s state and progress, live while the store has a subscriber. */
export function liveJob(client, id) {
  return store(
    (set, get) =>
      client.watchJob(
        id,
        (job) => set({ job, error: undefined, loading: false }),
        (error) => set({ job: get().job, error, loading: false }),
      ),
    { job: undefined, error: undefined, loading: true },
  );
}
