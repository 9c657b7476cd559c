import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { RotationError, type CapturedTicketsMust, type FleetVerifier, type LaggingNodes } from '../core/rotation.js';
import type { VerificationReport } from '../verify/verifier.js';
import type { VerifierEvent } from './verifier-function.js';

/** The rotation function's view of the verifier function, which runs in the nodes' network. */
export class LambdaFleetVerifier implements FleetVerifier {
  constructor(
    private readonly client: LambdaClient,
    private readonly functionName: string,
  ) {}

  private async invoke(event: VerifierEvent): Promise<unknown> {
    const response = await this.client.send(new InvokeCommand({ FunctionName: this.functionName, Payload: new TextEncoder().encode(JSON.stringify(event)) }));
    const payload = response.Payload ? (JSON.parse(new TextDecoder().decode(response.Payload)) as Record<string, unknown>) : {};
    if (response.FunctionError !== undefined) {
      throw new RotationError(`the verifier failed during ${event.action}: ${String(payload.errorMessage ?? response.FunctionError)}`);
    }
    return payload;
  }

  async captureBefore(versionId: string): Promise<void> {
    await this.invoke({ action: 'capture', versionId });
  }

  async verify(versionId: string, expectedKey: string, captured: CapturedTicketsMust, lagging?: LaggingNodes): Promise<VerificationReport> {
    return (await this.invoke({ action: 'verify', versionId, expectedKey, captured, ...(lagging ? { lagging } : {}) })) as VerificationReport;
  }

  async observe(nodes: string[]): Promise<Record<string, string | null>> {
    return ((await this.invoke({ action: 'observe', nodes })) as { keys: Record<string, string | null> }).keys;
  }
}
