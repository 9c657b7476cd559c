import { runSimulation } from '@cloud-copilot/iam-simulate';
import { ACCOUNT, REGION, type ResolvedTemplate } from './template-resolver.js';

/**
 * IAM proven by a policy evaluator (@cloud-copilot/iam-simulate) over a synthesized template: the
 * account's view of one deployed stack, and the decisions AWS would make on calls in it.
 */

export type Policy = { Version?: string; Statement: Record<string, unknown>[] };
export type Decision = 'Allowed' | 'ExplicitlyDenied' | 'ImplicitlyDenied';
export interface Call {
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
}

export const VIA_SECRETS_MANAGER = { 'kms:ViaService': `secretsmanager.${REGION}.amazonaws.com`, 'kms:CallerAccount': ACCOUNT };

/** The account's view of one deployed stack: who may do what, by its policies. */
export class Account {
  constructor(readonly template: ResolvedTemplate) {}

  arn(type: string, prefix: string, attribute?: string): string {
    const { id } = this.template.one(type, prefix);
    return attribute === undefined ? this.template.ref(id) : this.template.getAtt(id, attribute);
  }

  /**
   * A role's identity policies: inline, attached AWS::IAM::Policy and customer managed policies.
   * An AWS managed policy is not in the template: the caller names each one it leaves out.
   */
  identityPolicies(roleName: string, extraManagedPolicyArns: string[] = [], awsManagedLeftOut: string[] = []): { name: string; policy: Policy }[] {
    const policies: { name: string; policy: Policy }[] = [];
    const role = this.template.ofType('AWS::IAM::Role').find(([id]) => this.template.ref(id) === roleName);
    const managedArns = [...((role?.[1].ManagedPolicyArns as string[] | undefined) ?? []), ...extraManagedPolicyArns];
    for (const inline of (role?.[1].Policies as { PolicyName: string; PolicyDocument: Policy }[] | undefined) ?? []) {
      policies.push({ name: inline.PolicyName, policy: inline.PolicyDocument });
    }
    for (const [id, properties] of this.template.ofType('AWS::IAM::Policy')) {
      if ((properties.Roles as string[]).includes(roleName)) policies.push({ name: id, policy: properties.PolicyDocument as Policy });
    }
    for (const [id, properties] of this.template.ofType('AWS::IAM::ManagedPolicy')) {
      const attached = ((properties.Roles as string[] | undefined) ?? []).includes(roleName) || managedArns.includes(this.template.ref(id));
      if (attached) policies.push({ name: id, policy: properties.PolicyDocument as Policy });
    }
    const leftOut = awsManagedLeftOut.map((name) => `arn:aws:iam::aws:policy/${name}`);
    const unknown = managedArns.filter((arn) => !leftOut.includes(arn) && !this.template.ofType('AWS::IAM::ManagedPolicy').some(([id]) => this.template.ref(id) === arn));
    if (unknown.length > 0) throw new Error(`managed policies outside the template are not modelled: ${unknown.join(', ')}`);
    return policies;
  }

  /** The resource-based policy in force on `arn`, from the template. */
  resourcePolicy(arn: string): Policy | undefined {
    const statements: Record<string, unknown>[] = [];
    for (const [, properties] of this.template.ofType('AWS::SecretsManager::ResourcePolicy')) {
      if (properties.SecretId === arn) statements.push(...(properties.ResourcePolicy as Policy).Statement);
    }
    for (const [id, properties] of this.template.ofType('AWS::KMS::Key')) {
      if (this.template.getAtt(id, 'Arn') === arn) statements.push(...(properties.KeyPolicy as Policy).Statement);
    }
    for (const [, properties] of this.template.ofType('AWS::SNS::TopicPolicy')) {
      if ((properties.Topics as string[]).includes(arn)) statements.push(...(properties.PolicyDocument as Policy).Statement);
    }
    // A Lambda function's policy is the sum of its AWS::Lambda::Permission resources.
    for (const [, properties] of this.template.ofType('AWS::Lambda::Permission')) {
      if (properties.FunctionName !== arn) continue;
      const principal = String(properties.Principal);
      const condition: Record<string, Record<string, string>> = {};
      if (properties.SourceAccount !== undefined) condition.StringEquals = { 'AWS:SourceAccount': String(properties.SourceAccount) };
      if (properties.SourceArn !== undefined) condition.ArnLike = { 'AWS:SourceArn': String(properties.SourceArn) };
      statements.push({
        Effect: 'Allow',
        Principal: principal.endsWith('.amazonaws.com') ? { Service: principal } : { AWS: principal },
        Action: properties.Action,
        Resource: arn,
        ...(Object.keys(condition).length > 0 ? { Condition: condition } : {}),
      });
    }
    return statements.length === 0 ? undefined : { Version: '2012-10-17', Statement: statements };
  }

  /**
   * `principalTags` are the tags on the principal's role. For a role's session, AWS puts the role's
   * ARN, not the session's, in aws:PrincipalArn:
   * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
   */
  async decide(principal: string, identityPolicies: { name: string; policy: Policy }[], call: Call, principalTags: Record<string, string> = {}): Promise<Decision> {
    const resourcePolicy = this.resourcePolicy(call.resource);
    const role = /^arn:aws:sts::(\d{12}):assumed-role\/([^/]+)\//.exec(principal);
    const principalContext: Record<string, string> = {
      ...(role ? { 'aws:PrincipalArn': `arn:aws:iam::${role[1]}:role/${role[2]}` } : {}),
      ...Object.fromEntries(Object.entries(principalTags).map(([key, value]) => [`aws:PrincipalTag/${key}`, value])),
    };
    const result = await runSimulation(
      {
        request: {
          principal,
          action: call.action,
          resource: { resource: call.resource, accountId: ACCOUNT },
          contextVariables: { 'aws:SecureTransport': 'true', ...principalContext, ...call.context },
        },
        identityPolicies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(resourcePolicy ? { resourcePolicy } : {}),
      },
      {},
    );
    if (result.resultType === 'error') throw new Error(`simulation of ${call.action} on ${call.resource} is invalid: ${JSON.stringify(result.errors)}`);
    return result.overallResult as Decision;
  }
}

/** A role's session, as the function or service that assumed it calls AWS. */
export function session(roleName: string): string {
  return `arn:aws:sts::${ACCOUNT}:assumed-role/${roleName}/session`;
}

export async function decisions(account: Account, principal: string, policies: { name: string; policy: Policy }[], calls: Call[], principalTags: Record<string, string> = {}): Promise<string[]> {
  const lines: string[] = [];
  for (const call of calls) lines.push(`${call.action} ${call.resource}: ${await account.decide(principal, policies, call, principalTags)}`);
  return lines;
}

export const allowed = (calls: Call[]) => calls.map((call) => `${call.action} ${call.resource}: Allowed`);

