import { setTimeout as sleep } from 'node:timers/promises';
import { handshake, type Endpoint, type TlsVersion } from '../tls/probe.js';

export interface ResumptionStats {
  /** Connections that offered a session. */
  attempts: number;
  resumed: number;
  /** Attempts the server answered with a full handshake instead. */
  notResumed: number;
  errors: number;
  lastError?: string;
}

/**
 * A client that reconnects through the load balancer again and again, always offering the
 * newest session it holds, as a browser or an API client would.
 */
export class ResumptionClient {
  private stats: ResumptionStats = { attempts: 0, resumed: 0, notResumed: 0, errors: 0 };
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly endpoint: Endpoint,
    readonly version: TlsVersion,
    private readonly pauseMs = 10,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  snapshot(): ResumptionStats {
    return { ...this.stats };
  }

  async stop(): Promise<ResumptionStats> {
    this.running = false;
    await this.loop;
    return this.snapshot();
  }

  private async run(): Promise<void> {
    let session: Buffer | undefined;
    while (this.running) {
      try {
        const result = await handshake(this.endpoint, { version: this.version, ...(session ? { session } : {}) });
        if (session) {
          this.stats.attempts += 1;
          if (result.resumed) this.stats.resumed += 1;
          else this.stats.notResumed += 1;
        }
        session = result.session;
      } catch (error) {
        this.stats.errors += 1;
        this.stats.lastError = error instanceof Error ? error.message : String(error);
      }
      await sleep(this.pauseMs);
    }
  }
}

export function difference(after: ResumptionStats, before: ResumptionStats): ResumptionStats {
  return {
    attempts: after.attempts - before.attempts,
    resumed: after.resumed - before.resumed,
    notResumed: after.notResumed - before.notResumed,
    errors: after.errors - before.errors,
  };
}

export function sumStats(list: ResumptionStats[]): ResumptionStats {
  return list.reduce(
    (sum, stats) => ({
      attempts: sum.attempts + stats.attempts,
      resumed: sum.resumed + stats.resumed,
      notResumed: sum.notResumed + stats.notResumed,
      errors: sum.errors + stats.errors,
    }),
    { attempts: 0, resumed: 0, notResumed: 0, errors: 0 },
  );
}
