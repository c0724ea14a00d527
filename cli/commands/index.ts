/**
 * Every metadctl command group, in the order `metadctl --help` lists them. Adding a group is
 * one new file in cli/commands/ (a CommandGroup, see cli/command.ts) and one line here.
 */
import type { CommandGroup } from '../command.js';
import { daemonCommands } from './daemon.js';
import { installCommands } from './install.js';
import { instanceCommands } from './instances.js';
import { paramsCommands } from './params.js';
import { passwordCommands } from './password.js';
import { pipeCommands } from './pipe.js';
import { nicCommands } from './nic.js';

export const COMMAND_GROUPS: readonly CommandGroup[] = [
  instanceCommands,
  paramsCommands,
  pipeCommands,
  passwordCommands,
  nicCommands,
  installCommands,
  daemonCommands,
];
