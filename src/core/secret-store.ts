/**
 * The narrow view of a versioned secret that rotation needs, shaped like Secrets Manager so
 * the AWS implementation is a thin mapping and the local one behaves the same way.
 */
export const AWSCURRENT = 'AWSCURRENT';
export const AWSPENDING = 'AWSPENDING';
export const AWSPREVIOUS = 'AWSPREVIOUS';
/** The secret's tag by which an operator asks the next rotation to revoke every key; its value says who and why. */
export const REVOCATION_TAG = 'RevokeTicketKeys';

export interface SecretVersion {
  versionId: string;
  value: string;
  stages: string[];
}

export type VersionReference = { versionId: string } | { stage: string };

export interface SecretReader {
  /** The version with that id or that stage; undefined when there is none. */
  getVersion(reference: VersionReference): Promise<SecretVersion | undefined>;
}

export interface SecretStore extends SecretReader {
  /** Every version id that carries at least one stage, with its stages. */
  versionStages(): Promise<Record<string, string[]>>;
  /**
   * The versions that carry no stage at all (Secrets Manager calls them deprecated), newest
   * first: among them a pending version an operator took AWSPENDING off after cancelling.
   */
  unlabelledVersionIds(): Promise<string[]>;
  /**
   * Stores a new version and gives it `stages`, taking each stage off the version that had it.
   * Repeating the call with the same id and value changes nothing; another value is refused.
   */
  putVersion(versionId: string, value: string, stages: string[]): Promise<void>;
  /**
   * Moves `stage` onto `versionId`. Moving AWSCURRENT also gives AWSPREVIOUS to the version
   * that held AWSCURRENT, as Secrets Manager does.
   */
  moveStage(stage: string, versionId: string): Promise<void>;
  /** Takes `stage` off `versionId`. */
  removeStage(stage: string, versionId: string): Promise<void>;
  /**
   * What the operator wrote when asking the next rotation to revoke every key (the secret's
   * RevokeTicketKeys tag; empty when they wrote nothing); undefined when nobody asked.
   */
  revocationRequest(): Promise<string | undefined>;
  /** Withdraws that request: called once a revocation is AWSCURRENT. */
  clearRevocationRequest(): Promise<void>;
}
