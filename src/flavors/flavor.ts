/**
 * A server flavor, as a value: everything the TypeScript side knows of one kind of server, in
 * one file per flavor (this folder). The node applier's Python has its own driver per flavor
 * (applier/ticket_keys/flavors/). Nothing else in the tree switches on a flavor's name.
 */
export interface Flavor {
  readonly name: string;
  /** Keys the server holds at once, where it has a limit (HAProxy's TLS_TICKETS_NO); none: as many as a set. */
  readonly keyCapacity?: number;
  /** The key lengths in bytes it reads, where it does not read both (48 and 80). */
  readonly keyLengths?: readonly number[];
  /** The include's file name in the key directory. */
  readonly includeFileName: string;
  /** Its usual main config, where onboarding adds the managed keys unless told another file. */
  readonly defaultConfig: string;
  /** Its commands on a systemd host: the node documents' defaults. */
  readonly commands: { readonly test: string; readonly configDump: string; readonly reload: string };
  /** Whether a running server takes new keys through a runtime API (`--runtime-socket`) instead of a reload. */
  readonly hasRuntimeApi: boolean;
  /** What turns its session tickets on, for a node that issues none. */
  readonly ticketsOn: string;
  /** Whether an HTTP/1 response head (its header lines) came from this server. */
  answered(head: ResponseHead): boolean;
  /** How the local fleet runs one node of it. */
  readonly local: LocalServer;
}

export interface ResponseHead {
  headerNames: string[];
  /** The product in the Server header, lower case ("nginx" from "nginx/1.22.1"). */
  serverProduct?: string;
}

/** One local node's files and port, from which a flavor makes its config and commands. */
export interface LocalNodePlace {
  name: string;
  host: string;
  port: number;
  /** The node's own directory: config, logs, pid file. */
  prefix: string;
  configFile: string;
  /** The server's binary, found on PATH. */
  binary: string;
}

export interface LocalServer {
  /** The binary to look for, and how to install it on Debian. */
  readonly binary: string;
  readonly install: string;
  readonly configFileName: string;
  commands(place: LocalNodePlace): { testCommand: string; configDumpCommand: string; reloadCommand: string; pidFile: string; runtimeSocket?: string };
  /** The config an operator would have written (before onboarding): TLS 1.2 and 1.3, tickets on, no session cache. */
  config(place: LocalNodePlace & { runtimeSocket?: string }, tls: { certificate: string; key: string; certificateWithKey: string }): string;
  /** An include that leaves the node on keys of its own, shared with no other node (a fleet without rotation). */
  unsharedKeys(): { text: string; mode: number };
  /** The arguments that start it in the foreground. */
  startArgs(place: LocalNodePlace & { pidFile: string }): string[];
}
