import { PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import type { KeyNamesBoard, PublishedKeyNames } from '../core/key-names.js';

/** The rotation's key names board: a Systems Manager String parameter (it holds no key material). */
export class SsmParameterKeyNames implements KeyNamesBoard {
  constructor(
    private readonly client: SSMClient,
    private readonly name: string,
  ) {}

  async write(names: PublishedKeyNames): Promise<void> {
    await this.client.send(new PutParameterCommand({ Name: this.name, Value: JSON.stringify(names), Type: 'String', Overwrite: true }));
  }
}
