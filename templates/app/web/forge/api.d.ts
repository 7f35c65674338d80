// Written by `forge generate ts` from the application's functions: do not edit; run it again
// after changing a function or its types.

import type { ForgeClient, FunctionRef, JobState, ForgeError, Unsubscribe } from './client.js';

/** One sign-up, as `recent_signups` lists it. */
export type RecentSignup = {
  /** Who signed up. */
  email: string;
  /** Whether every attempt to welcome them failed. */
  welcome_failed: boolean;
  /** Whether the welcome message went out. */
  welcomed: boolean;
};

/** What `sign_up` takes, and what `send_welcome` gets. */
export type SignUp = {
  /** Who signs up. */
  email: string;
};

/** The application's functions, by kind, each callable and subscribable. */
export interface Api {
  query: {
    /**
     * The latest sign-ups, newest first (at most 50). Live: a page subscribed to it over `/ws`
     * gets the new list whenever a transaction changes `signups` (see web/index.html).
     *
     * `recent_signups` (Public.)
     */
    recentSignups: FunctionRef<'query', null, RecentSignup[]>;
    /**
     * How many people signed up. `POST /rpc/signup_count` with `null`.
     *
     * `signup_count` (Public.)
     */
    signupCount: FunctionRef<'query', null, number>;
  };
  mutation: {
    /**
     * Records a sign-up and dispatches its welcome message; both commit together or not at all.
     * `POST /rpc/sign_up` with `{"email": "ada@example.com"}` answers the job's id.
     *
     * `sign_up` (Public.)
     */
    signUp: FunctionRef<'mutation', SignUp, number>;
  };
  action: {
  };
}

/** The client `api`, `subscribe` and `watchJob` use: configure it with `client.configure({ url, token })`. */
export declare const client: ForgeClient;
/** The functions, called through `client`. */
export declare const api: Api;
/** Runs a query now and again whenever its result changes; returns a function that stops it. */
export declare function subscribe<A, R>(
  query: FunctionRef<'query', A, R>,
  args: A,
  onData: (data: R) => void,
  onError?: (error: ForgeError) => void,
): Unsubscribe;
/** Follows a job's state and progress until it finishes; returns a function that stops it. */
export declare function watchJob(
  id: number,
  onJob: (job: JobState) => void,
  onError?: (error: ForgeError) => void,
): Unsubscribe;
export declare function createApi(client: ForgeClient): Api;
