import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'cdk.out/', 'node_modules/', 'bench/results/', '.stryker-tmp/', '.tools/', 'test/integ/*.snapshot/', 'test/integ/cdk-integ.out.*/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Tests index into fixtures they just built; a wrong index fails the test anyway.
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
