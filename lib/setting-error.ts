/** A setting of the stack that cannot work, said so that the user knows what to change: `cdk synth` prints its message alone. */
export class SettingError extends Error {
  override name = 'SettingError';
}
