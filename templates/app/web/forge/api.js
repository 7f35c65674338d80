// Written by `forge generate ts` from the application's functions: do not edit; run it again
// after changing a function or its types.

import { ForgeClient } from './client.js';

/** The application's functions, called through `client`. */
export function createApi(client) {
  return {
    query: {
      recentSignups: client.ref('query', "recent_signups"),
      signupCount: client.ref('query', "signup_count"),
    },
    mutation: {
      signUp: client.ref('mutation', "sign_up"),
    },
    action: {
    },
  };
}

export const client = new ForgeClient();
export const api = createApi(client);
export function subscribe(query, args, onData, onError) {
  return query.client.subscribe(query, args, onData, onError);
}
export function watchJob(id, onJob, onError) {
  return client.watchJob(id, onJob, onError);
}
