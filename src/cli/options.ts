import { parseArgs } from 'node:util';

/** A refusal of what was typed: the CLI prints its message alone and exits 2. */
export class UsageError extends Error {}

export interface OptionSpec {
  /** A string, a flag, or a string that may be given more than once. */
  readonly kind: 'string' | 'boolean' | 'strings';
  /** What its value is, in the help: FILE, DURATION. */
  readonly value?: string;
  readonly help: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export type OptionValues<Specs extends OptionSpecs> = {
  -readonly [Name in keyof Specs]?: Specs[Name]['kind'] extends 'boolean' ? boolean : Specs[Name]['kind'] extends 'strings' ? string[] : string;
};

/** A command of the CLI: what it does, the options it takes, and how it runs with them. */
export interface Command {
  readonly summary: string;
  readonly help: string;
  run(argv: string[]): Promise<number>;
}

/** The number of single-character edits between two words. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      current[j] = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length] as number;
}

/** The candidate closest to `word`, when it is close enough to be what was meant. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  const scored = candidates.map((candidate) => ({ candidate, score: distance(word, candidate) }));
  const best = scored.sort((a, b) => a.score - b.score)[0];
  return best !== undefined && best.score <= Math.max(1, Math.floor(word.length / 3)) ? best.candidate : undefined;
}

function formatHelp(name: string, summary: string, specs: OptionSpecs, notes: string): string {
  const rows = Object.entries(specs).map(([option, spec]) => [`--${option}${spec.value ? ` ${spec.value}` : ''}${spec.kind === 'strings' ? ' ...' : ''}`, spec.help] as const);
  const width = Math.max(...rows.map(([left]) => left.length), '--help'.length);
  return [
    `Usage: ticket-keys ${name} [options]: ${summary}`,
    '',
    'Options:',
    ...rows.map(([left, help]) => `  ${left.padEnd(width)}  ${help}`),
    `  ${'--help'.padEnd(width)}  this text`,
    ...(notes ? ['', notes] : []),
    '',
  ].join('\n');
}

/**
 * A command that takes exactly `specs`: any other option is refused by name with the nearest
 * valid one, and so is an argument that is not an option, a value missing or a flag given one.
 */
export function command<Specs extends OptionSpecs>(
  name: string,
  definition: { summary: string; options: Specs; notes?: string; run(values: OptionValues<Specs>): Promise<number> },
): Command {
  const help = formatHelp(name, definition.summary, definition.options, definition.notes ?? '');
  const seeHelp = `see \`ticket-keys ${name} --help\``;
  return {
    summary: definition.summary,
    help,
    async run(argv) {
      const options = Object.fromEntries([
        ...Object.entries(definition.options).map(([option, spec]) => [option, { type: spec.kind === 'boolean' ? 'boolean' : 'string', multiple: spec.kind === 'strings' }]),
        ['help', { type: 'boolean', short: 'h' }],
      ]) as Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;
      const { values, tokens } = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
      for (const token of tokens) {
        if (token.kind === 'positional') throw new UsageError(`${name} takes no argument "${token.value}": give everything as an option; ${seeHelp}`);
        if (token.kind !== 'option') continue;
        const spec = definition.options[token.name];
        if (token.name === 'help' || token.name === 'h') continue;
        if (spec === undefined) {
          const close = nearest(token.name, Object.keys(definition.options));
          throw new UsageError(`${name} has no option ${token.rawName}${close ? ` (did you mean --${close}?)` : ''}: ${seeHelp}`);
        }
        if (spec.kind === 'boolean' && token.value !== undefined) throw new UsageError(`${token.rawName} takes no value; ${seeHelp}`);
        // Without strict parsing, `--out --force` would take "--force" as the file: an option is never a value unless written --out=VALUE.
        const optionAsValue = token.value !== undefined && !token.inlineValue && token.value.startsWith('-') && token.value !== '-';
        if (spec.kind !== 'boolean' && (token.value === undefined || optionAsValue)) throw new UsageError(`${token.rawName} needs a value${spec.value ? ` (${spec.value})` : ''}; ${seeHelp}`);
      }
      if (values.help === true) {
        process.stdout.write(help);
        return 0;
      }
      return definition.run(values as OptionValues<Specs>);
    },
  };
}
