import type { CapturedTicketsMust, FleetVerifier, LaggingNodes } from '../core/rotation.js';
import { captureSources, captureTickets, capturedTicketsOption, observeKeys, verifyFleet, type CapturedTicket, type VerificationReport, type VerifyNode } from '../verify/verifier.js';

/** The verifier run in-process against the local nodes it finds running; captured tickets stay in memory. */
export class LocalFleetVerifier implements FleetVerifier {
  private readonly captured = new Map<string, CapturedTicket[]>();

  constructor(private readonly nodes: () => VerifyNode[]) {}

  async captureBefore(versionId: string): Promise<void> {
    if (!this.captured.has(versionId)) this.captured.set(versionId, await captureTickets(captureSources(this.nodes(), versionId)));
  }

  verify(versionId: string, expectedKey: string, captured: CapturedTicketsMust, lagging?: LaggingNodes): Promise<VerificationReport> {
    const tickets = this.captured.get(versionId) ?? [];
    return verifyFleet(this.nodes(), { expectedKey, ...capturedTicketsOption(tickets, captured), ...(lagging ? { lagging } : {}) });
  }

  async observe(nodes: string[]): Promise<Record<string, string | null>> {
    const found = this.nodes().filter((node) => nodes.includes(node.name));
    return { ...Object.fromEntries(nodes.map((node) => [node, null])), ...(await observeKeys(found)) };
  }
}
