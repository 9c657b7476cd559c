import { App, AspectPriority, Aspects, CfnElement, CfnResource, Stack } from 'aws-cdk-lib';
import { Construct, type IConstruct } from 'constructs';

/**
 * One concern of TicketKeyRotation, as a construct of its own, whose CloudFormation resources
 * keep the logical IDs they had when they sat directly under TicketKeyRotation: CloudFormation
 * replaces a resource whose logical ID changes, and a replaced key set secret, KMS key, log
 * group or alarm topic would lose what a deployed stack holds. So every element under it gets
 * the ID of its path without this construct's own segment, given by its stack (any naming
 * scheme and rename the stack applies still hold): `keepFormerIds` gives it to what exists,
 * before anyone can read an ID (TicketKeyRotation calls it last), and an aspect gives it at
 * synthesis to what a user adds later (a grant that adds a resource policy).
 */
export class Concern extends Construct {
  /** A detached tree that holds former paths alone, for the stack to name their leaves; never synthesized. */
  private readonly formerPaths = new Stack(new App({ autoSynth: false }), 'FormerPaths');
  private readonly kept = new WeakSet<CfnElement>();

  constructor(scope: Construct, id: string) {
    super(scope, id);
    Aspects.of(this).add({ visit: (node) => this.keepFormerId(node) }, { priority: AspectPriority.MUTATING });
  }

  /** Gives every element created so far its former ID: before anything reads one (a cdk-nag suppression, an export). */
  keepFormerIds(): void {
    for (const child of this.node.findAll()) this.keepFormerId(child);
  }

  private keepFormerId(node: IConstruct): void {
    if (!CfnElement.isCfnElement(node) || this.kept.has(node)) return;
    node.overrideLogicalId(this.formerLogicalId(node));
    this.kept.add(node);
  }

  /** The logical ID `element`'s stack gives the same path without this construct's segment. */
  private formerLogicalId(element: CfnElement): string {
    const stack = Stack.of(element);
    const scopes = element.node.scopes;
    const path = scopes
      .slice(scopes.indexOf(stack) + 1)
      .filter((scope) => scope !== this)
      .map((scope) => scope.node.id);
    let parent: Construct = this.formerPaths;
    for (const id of path.slice(0, -1)) parent = (parent.node.tryFindChild(id) as Construct | undefined) ?? new Construct(parent, id);
    const leaf = path.at(-1) as string;
    const former = (parent.node.tryFindChild(leaf) as CfnElement | undefined) ?? new CfnResource(parent, leaf, { type: 'Former::Logical::Id' });
    return stack.getLogicalId(former);
  }
}
