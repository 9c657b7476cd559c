import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { TicketKeyRotation, type TicketKeyRotationProps } from './ticket-key-rotation.js';

export interface TicketKeyRotationStackProps extends StackProps {
  readonly rotation: TicketKeyRotationProps;
}

/** The deployable stack: one fleet's ticket key rotation, and the outputs the README's steps use, by these names. */
export class TicketKeyRotationStack extends Stack {
  readonly rotation: TicketKeyRotation;

  constructor(scope: Construct, id: string, props: TicketKeyRotationStackProps) {
    super(scope, id, {
      description: 'Rotates TLS session ticket keys across a load-balanced fleet without losing cross-node resumption',
      ...props,
    });
    const rotation = new TicketKeyRotation(this, 'TicketKeys', props.rotation);
    this.rotation = rotation;
    const outputs: Record<string, { value: string; description: string }> = {
      SecretArn: { value: rotation.secret.secretArn, description: 'The key set secret: rotate it from its Rotation configuration' },
      NodePolicyArn: { value: rotation.nodePolicy.managedPolicyArn, description: 'Attach to the nodes\' instance role' },
      OnboardingDocumentName: { value: rotation.onboardingDocument.ref, description: 'SSM document to run once on each node before its first rotation' },
      DocumentName: { value: rotation.document.ref, description: 'SSM document that applies a key set on a node' },
      ConvergenceAssociationId: { value: rotation.convergence.attrAssociationId, description: 'State Manager association that applies AWSCURRENT on every node: "Apply association now" after onboarding' },
      KeyNamesParameter: { value: rotation.keyNames.parameterName, description: 'Names of the current and pending keys (no material), published by each rotation' },
      VerifierFunctionName: { value: rotation.verifierFunction.functionName, description: 'Invoke with {"action":"canary"} to verify the fleet now' },
      RotationLogGroup: { value: rotation.rotationLogs.logGroupName, description: 'One JSON line per rotation step' },
      CommandOutputLogGroup: { value: rotation.commandOutput.logGroupName, description: 'The nodes\' output of the SSM documents' },
      TargetTag: { value: `${props.rotation.targetTagKey}=${props.rotation.targetTagValue}`, description: 'The EC2 tag that selects the fleet\'s nodes (key=value)' },
      AlarmTopicArn: { value: rotation.alarmTopic.topicArn, description: 'The alarms\' SNS topic: subscribe to it' },
      ...(rotation.verifierSecurityGroup
        ? { VerifierSecurityGroupId: { value: rotation.verifierSecurityGroup.securityGroupId, description: 'Allow TLS from this security group in the nodes\' security group' } }
        : {}),
    };
    for (const [name, output] of Object.entries(outputs)) new CfnOutput(this, name, output);
  }
}
